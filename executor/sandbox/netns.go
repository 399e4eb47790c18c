package sandbox

// The default RUN network: a network namespace apart from the host's,
// joined to the outside by user-mode networking (slirp4netns, as rootless
// podman does), so package managers reach their mirrors while the host's
// loopback services and abstract unix sockets stay out of reach. One such
// namespace serves every RUN of a build (BuildKit keeps a pool of them
// too): slirp4netns starts once, not per RUN.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Network modes of SpecOptions.Network.
const (
	NetworkPrivate = "private" // own namespace + slirp4netns (the default)
	NetworkHost    = "host"    // the host's network namespace
	NetworkNone    = "none"    // own namespace, loopback only
)

// annotationNetwork marks a spec whose network namespace gets user-mode
// networking.
const annotationNetwork = "dev.builder.network"

// privateDNS is slirp4netns's built-in DNS forwarder.
const privateDNS = "10.0.2.3"

var (
	slirpOnce sync.Once
	slirpPath string
	slirpErr  error
)

// PrivateNetwork reports whether the private network can be set up here:
// slirp4netns is installed and /dev/net/tun can be opened. The error says
// what is missing.
func PrivateNetwork() error {
	slirpOnce.Do(func() {
		p, err := exec.LookPath("slirp4netns")
		if err != nil {
			slirpErr = errors.New("slirp4netns is not installed (Debian: apt-get install slirp4netns)")
			return
		}
		f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
		if err != nil {
			slirpErr = fmt.Errorf("cannot open /dev/net/tun: %w", err)
			return
		}
		f.Close()
		slirpPath = p
	})
	return slirpErr
}

// userModeNet is a running slirp4netns serving one RUN's namespace.
type userModeNet struct {
	cmd  *exec.Cmd
	exit *os.File // closing it stops slirp4netns
}

// startUserModeNet attaches slirp4netns to the network namespace of pid
// and returns once the namespace has its interface, address and route.
func startUserModeNet(pid int) (*userModeNet, error) {
	if err := PrivateNetwork(); err != nil {
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, err
	}
	cmd := exec.Command(slirpPath, "--configure", "--mtu=65520", "--disable-host-loopback",
		"--ready-fd=3", "--exit-fd=4", strconv.Itoa(pid), "tap0")
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	out := &limitedBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Start()
	readyW.Close()
	exitR.Close()
	if err != nil {
		exitW.Close()
		return nil, fmt.Errorf("starting slirp4netns: %w", err)
	}
	n := &userModeNet{cmd: cmd, exit: exitW}
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := readyR.Read(b)
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("timed out")
	}
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("slirp4netns did not come up: %v: %s", err, out.String())
	}
	return n, nil
}

func (n *userModeNet) stop() {
	n.exit.Close()
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

const netHolderName = "builder-netns-holder"

// netHolderMain keeps a network namespace alive for the build: it lives
// in it and waits until its parent dies (Pdeathsig) or kills it.
func netHolderMain() {
	for {
		unix.Pause()
	}
}

// sharedNet is the build's private network: a holder process in a new
// network namespace, slirp4netns attached to it, and an open handle of
// the namespace that each RUN joins.
type sharedNet struct {
	holder *exec.Cmd
	slirp  *userModeNet
	ns     *os.File
	err    error
}

// privateNet returns the build's private network namespace, making it on
// first use.
func (s *Sandbox) privateNet() (*os.File, error) {
	s.netOnce.Do(func() {
		n := &sharedNet{}
		s.net = n
		cmd := command(netHolderName)
		cmd.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: unix.SIGKILL}
		if err := start(cmd); err != nil {
			n.err = fmt.Errorf("network namespace: %w", err)
			return
		}
		n.holder = cmd
		if n.ns, n.err = os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)); n.err != nil {
			return
		}
		n.slirp, n.err = startUserModeNet(cmd.Process.Pid)
	})
	if s.net.err != nil {
		return nil, s.net.err
	}
	return s.net.ns, nil
}

func (n *sharedNet) stop() {
	if n.slirp != nil {
		n.slirp.stop()
	}
	if n.ns != nil {
		n.ns.Close()
	}
	if n.holder != nil {
		n.holder.Process.Kill()
		n.holder.Wait()
	}
}
