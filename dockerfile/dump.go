package dockerfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Dump renders steps one per line, for golden tests and debugging. The
// format is stable: "<pos> <kind>=<quoted text> key=value...", where empty
// values are left out and lists are JSON. A Meta shows the config fields
// that differ, after its change, from the config after the previous Meta
// of the list (all fields for the first one); changes apply to a copy of
// base, the config Lower was given.
func Dump(base BaseConfig, steps []Step) string {
	var b strings.Builder
	var prev map[string]json.RawMessage
	cfg := cloneConfig(base)
	for _, s := range steps {
		var d dumper
		switch s := s.(type) {
		case *Exec:
			d.add("exec", strconv.Quote(s.Text))
			d.json("args", s.Args)
			d.json("env", s.Env)
			d.str("user", s.User)
			d.str("dir", s.Dir)
			d.json("shell", s.Shell)
			if s.Network != "default" {
				d.str("net", s.Network)
			}
			if s.Security != "sandbox" {
				d.str("security", s.Security)
			}
			for _, m := range s.Mounts {
				d.str("mount", m.String())
			}
			for _, f := range s.Files {
				d.add("file", f.String())
			}
			d.json("proxy", s.Proxy)
			d.str("platform", s.Platform.String())
		case *Copy:
			kind := "copy"
			if s.Add {
				kind = "add"
			}
			d.add(kind, strconv.Quote(s.Text))
			d.str("from", s.From.String())
			d.json("srcs", s.Srcs)
			for _, h := range s.Inline {
				d.add("inline", h.String())
			}
			d.str("dest", s.Dest)
			d.str("chown", s.Chown)
			d.str("chmod", s.Chmod)
			d.json("exclude", s.Excludes)
			d.flag("link", s.Link)
			d.flag("parents", s.Parents)
			d.str("checksum", s.Checksum)
			d.flag("keep-git-dir", s.KeepGitDir)
			if s.Unpack != nil {
				d.str("unpack", strconv.FormatBool(*s.Unpack))
			}
			d.str("platform", s.Platform.String())
		case *Meta:
			d.add("meta", strconv.Quote(s.Text))
			d.flag("nohistory", s.NoHistory)
			d.str("author", s.Author)
			d.str("mkdir", s.Mkdir)
			if s.Change != nil {
				s.Change(&cfg)
			}
			prev = d.config(prev, cfg)
		}
		fmt.Fprintf(&b, "%s %s\n", s.Pos(), strings.Join(d.parts, " "))
	}
	return b.String()
}

type dumper struct{ parts []string }

// config prints the top-level config fields that differ from prev (all of
// them for the first Meta), as "config.Field=<json>"; a removed field prints
// as null. It returns the fields for the next comparison.
func (d *dumper) config(prev map[string]json.RawMessage, c BaseConfig) map[string]json.RawMessage {
	cur := map[string]json.RawMessage{}
	b, err := marshal(c)
	if err == nil {
		err = json.Unmarshal(b, &cur)
	}
	if err != nil {
		d.add("config", strconv.Quote(err.Error()))
		return prev
	}
	keys := slices.Sorted(maps.Keys(cur))
	for k := range prev {
		if _, ok := cur[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, ok := cur[k]
		switch {
		case !ok:
			d.add("config."+k, "null")
		case prev == nil || !bytes.Equal(prev[k], v):
			d.add("config."+k, string(v))
		}
	}
	return cur
}

func (d *dumper) add(k, v string) { d.parts = append(d.parts, k+"="+v) }

func (d *dumper) str(k, v string) {
	if v != "" {
		d.add(k, quoteIfNeeded(v))
	}
}

func (d *dumper) flag(k string, v bool) {
	if v {
		d.parts = append(d.parts, k)
	}
}

func (d *dumper) json(k string, v any) {
	b, err := marshal(v)
	if err != nil {
		b = []byte(strconv.Quote(err.Error()))
	}
	switch string(b) {
	case "null", "[]", "{}", `""`:
		return
	}
	d.add(k, string(b))
}

func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, " \t\n\"'\\") || s != strings.TrimSpace(s) {
		return strconv.Quote(s)
	}
	return s
}

// String is "context", "stage:N" or "image:REF".
func (s Source) String() string {
	switch s.Kind {
	case SourceStage:
		return "stage:" + strconv.Itoa(s.Stage)
	case SourceImage:
		return "image:" + s.Image
	default:
		return "context"
	}
}

// String renders a mount in --mount syntax with the defaults made explicit.
func (m Mount) String() string {
	parts := []string{"type=" + m.Type, "from=" + m.From.String()}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("source", m.Source)
	add("target", m.Target)
	if m.ReadOnly {
		parts = append(parts, "ro")
	}
	add("id", m.CacheID)
	add("sharing", m.Sharing)
	if m.Required {
		parts = append(parts, "required")
	}
	add("env", m.Env)
	if m.Size != 0 {
		add("size", strconv.FormatInt(m.Size, 10))
	}
	if m.Mode != nil {
		add("mode", fmt.Sprintf("%04o", *m.Mode))
	}
	if m.UID != nil {
		add("uid", strconv.FormatUint(uint64(*m.UID), 10))
	}
	if m.GID != nil {
		add("gid", strconv.FormatUint(uint64(*m.GID), 10))
	}
	return strings.Join(parts, ",")
}

// String renders a heredoc as name:"data" (chomp marked with <<-).
func (h Heredoc) String() string {
	prefix := "<<"
	if h.Chomp {
		prefix = "<<-"
	}
	return prefix + h.Name + ":" + strconv.Quote(h.Data)
}

// ConfigAfter is the config steps leave when their Meta changes are
// applied, in order, to a copy of base (the config Lower was given).
func ConfigAfter(base BaseConfig, steps []Step) BaseConfig {
	cfg := cloneConfig(base)
	for _, s := range steps {
		if m, ok := s.(*Meta); ok && m.Change != nil {
			m.Change(&cfg)
		}
	}
	return cfg
}
