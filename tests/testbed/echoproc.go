package testbed

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// echoEnv carries the port to a test binary re-executed as an echo server.
const echoEnv = "DRIFT_TESTBED_ECHO_PORT"

// ServeEchoIfChild turns a test binary started by StartEcho into the echo
// server; call it first thing in TestMain. In any other process it returns.
func ServeEchoIfChild() {
	p := os.Getenv(echoEnv)
	if p == "" {
		return
	}
	l, err := net.Listen("tcp4", ":"+p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbed echo:", err)
		os.Exit(2)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// StartEcho runs a TCP echo server as a process of the host (in its
// namespace and cgroup), unlike Echo, whose sockets live in the test process
// and keep the namespace alive. The test package's TestMain must call
// ServeEchoIfChild. It returns once the server accepts connections.
func (h *Host) StartEcho(port uint16) (*exec.Cmd, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), echoEnv+"="+strconv.Itoa(int(port)))
	cmd.Stderr = os.Stderr
	if err := h.Start(cmd); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		c, err := h.DialContext(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return cmd, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("echo process on %s never listened on %d: %w", h.Name, port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
