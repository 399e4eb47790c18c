package dockerfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// cloneConfig deep-copies a config so that every Meta step owns its
// snapshot; nil and empty slices keep their distinction.
func cloneConfig(c BaseConfig) BaseConfig {
	out := c
	out.ExposedPorts = maps.Clone(c.ExposedPorts)
	out.Env = slices.Clone(c.Env)
	out.Entrypoint = slices.Clone(c.Entrypoint)
	out.Cmd = slices.Clone(c.Cmd)
	out.Volumes = maps.Clone(c.Volumes)
	out.Labels = maps.Clone(c.Labels)
	out.OnBuild = slices.Clone(c.OnBuild)
	out.Shell = slices.Clone(c.Shell)
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = slices.Clone(h.Test)
		out.Healthcheck = &h
	}
	return out
}

// defaultShell is BuildKit's: cmd /S /C on Windows, /bin/sh -c elsewhere.
func defaultShell(os string) []string {
	if os == "windows" {
		return []string{"cmd", "/S", "/C"}
	}
	return []string{"/bin/sh", "-c"}
}

// jsonArray renders an argv the way it is written in exec form; it is the
// stable text form used for CMD, ENTRYPOINT, SHELL and exec-form RUN.
func jsonArray(args []string) string {
	if args == nil {
		args = []string{}
	}
	b, _ := marshal(args)
	return string(b)
}

// marshal is json.Marshal without HTML escaping, so that shell text such
// as "a && b > c" stays readable in Text and Dump.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// healthText renders a HEALTHCHECK for Meta.Text.
func healthText(h *dockerspec.HealthcheckConfig) string {
	if len(h.Test) == 1 && h.Test[0] == "NONE" {
		return "HEALTHCHECK NONE"
	}
	var b strings.Builder
	b.WriteString("HEALTHCHECK")
	for _, d := range []struct {
		name string
		v    fmt.Stringer
		set  bool
	}{
		{"interval", h.Interval, h.Interval != 0},
		{"timeout", h.Timeout, h.Timeout != 0},
		{"start-period", h.StartPeriod, h.StartPeriod != 0},
		{"start-interval", h.StartInterval, h.StartInterval != 0},
	} {
		if d.set {
			fmt.Fprintf(&b, " --%s=%s", d.name, d.v)
		}
	}
	if h.Retries != 0 {
		fmt.Fprintf(&b, " --retries=%d", h.Retries)
	}
	b.WriteString(" " + jsonArray(h.Test))
	return b.String()
}

// portSpec is one EXPOSE word split as Docker does: [ip:[host:]]port[/proto].
type portSpec struct{ ip, host, port, proto string }

func splitPort(raw string) (portSpec, error) {
	var sp portSpec
	parts := strings.Split(raw, ":")
	n := len(parts)
	switch n {
	case 1:
		sp.port = parts[0]
	case 2:
		sp.host, sp.port = parts[0], parts[1]
	default:
		sp.ip, sp.host, sp.port = strings.Join(parts[:n-2], ":"), parts[n-2], parts[n-1]
	}
	sp.port, sp.proto, _ = strings.Cut(sp.port, "/")
	if sp.port == "" {
		return sp, errors.New("no port specified")
	}
	switch strings.ToLower(sp.proto) {
	case "":
		sp.proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return sp, errors.New("invalid proto: " + sp.proto)
	}
	return sp, nil
}

// exposedPorts expands one EXPOSE word into "port/proto" keys, with ranges
// enumerated and the protocol lower-cased (BuildKit's parsePort). IP and
// host parts are accepted for compatibility and ignored.
func exposedPorts(raw string) ([]string, error) {
	sp, err := splitPort(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid port: %q: %w", raw, err)
	}
	if ip := strings.TrimSuffix(strings.TrimPrefix(sp.ip, "["), "]"); ip != "" && net.ParseIP(ip) == nil {
		return nil, fmt.Errorf("invalid IP address: %s", sp.ip)
	}
	start, end, err := portRange(sp.port)
	if err != nil {
		return nil, fmt.Errorf("invalid containerPort: %s", sp.port)
	}
	if sp.host != "" {
		hs, he, err := portRange(sp.host)
		if err != nil {
			return nil, fmt.Errorf("invalid hostPort: %s", sp.host)
		}
		if end-start != he-hs && end != start {
			return nil, fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", sp.port, sp.host)
		}
	}
	proto := strings.ToLower(sp.proto)
	out := make([]string, 0, end-start+1)
	for p := start; p <= end; p++ {
		out = append(out, strconv.Itoa(p)+"/"+proto)
	}
	return out, nil
}

func portRange(s string) (int, int, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	start, err := portNumber(lo)
	if err != nil {
		return 0, 0, err
	}
	if !isRange || lo == hi {
		return start, start, nil
	}
	end, err := portNumber(hi)
	if err != nil {
		return 0, 0, err
	}
	if end < start {
		return 0, 0, errors.New("invalid port range: " + s)
	}
	return start, end, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return int(n), nil
}

// linuxSignals are the names moby/sys/signal accepts on Linux (without the
// SIG prefix). STOPSIGNAL is validated like docker does, but stored as
// written.
var linuxSignals = map[string]bool{
	"ABRT": true, "ALRM": true, "BUS": true, "CHLD": true, "CLD": true, "CONT": true,
	"FPE": true, "HUP": true, "ILL": true, "INT": true, "IO": true, "IOT": true,
	"KILL": true, "PIPE": true, "POLL": true, "PROF": true, "PWR": true, "QUIT": true,
	"SEGV": true, "STKFLT": true, "STOP": true, "SYS": true, "TERM": true, "TRAP": true,
	"TSTP": true, "TTIN": true, "TTOU": true, "URG": true, "USR1": true, "USR2": true,
	"VTALRM": true, "WINCH": true, "XCPU": true, "XFSZ": true, "RTMIN": true, "RTMAX": true,
	"UNUSED": true,
}

const maxSignal = 64 // SIGRTMAX on Linux

func checkSignal(s string) error {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		if n == 0 || n > maxSignal {
			return fmt.Errorf("invalid signal: %s", s)
		}
		return nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if linuxSignals[name] {
		return nil
	}
	// SIGRTMIN+n and SIGRTMAX-n, within the real-time range 34..64.
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN+", 34, 1}, {"RTMAX-", 64, -1}} {
		if rest, ok := strings.CutPrefix(name, rt.prefix); ok {
			if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
				if v := rt.base + rt.sign*n; v >= 34 && v <= maxSignal {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("invalid signal: %s", s)
}
