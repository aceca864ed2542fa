// Package rules drives the node-side enrollment agent (`ztunnel-agent serve`, C++):
// it owns the capture rules and the ZDS socket, so that neither is implemented twice.
// This package starts it as a child and talks to it over its control socket.
package rules

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Client sends control requests ("verb\nkey=value\n…") to a running ztunnel-agent.
type Client struct {
	Socket  string
	Timeout time.Duration // per request; the agent waits up to 5 s for each node's ack
}

// Pod is what an enrollment names.
type Pod struct {
	UID, Netns, Name, Namespace, ServiceAccount string
}

// ErrRefused wraps an answer "error\n…" from the agent (its text says why).
var ErrRefused = errors.New("refused")

func (c *Client) request(verb string, fields ...string) (string, error) {
	conn, err := net.DialTimeout("unixpacket", c.Socket, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("cannot reach ztunnel-agent at %s: %w", c.Socket, err)
	}
	defer conn.Close()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	msg := verb + "\n"
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.ContainsAny(fields[i+1], "\n") {
			return "", fmt.Errorf("%s: %s contains a newline", verb, fields[i])
		}
		msg += fields[i] + "=" + fields[i+1] + "\n"
	}
	if _, err := conn.Write([]byte(msg)); err != nil {
		return "", fmt.Errorf("sending %s to ztunnel-agent: %w", verb, err)
	}
	buf := make([]byte, 1<<20)
	n, err := conn.Read(buf)
	if err != nil {
		return "", fmt.Errorf("waiting for ztunnel-agent's answer to %s: %w", verb, err)
	}
	reply := string(buf[:n])
	status, body, _ := strings.Cut(reply, "\n")
	body = strings.TrimRight(body, "\n")
	if status != "ok" {
		return body, fmt.Errorf("%w: %s", ErrRefused, body)
	}
	return body, nil
}

// Enroll installs the pod's capture rules and hands it to every node process; an
// error means it is not enrolled (a node's NACK takes it back).
func (c *Client) Enroll(p Pod) (string, error) {
	return c.request("enroll", "uid", p.UID, "netns", p.Netns, "name", p.Name,
		"namespace", p.Namespace, "service_account", p.ServiceAccount)
}

// Keep marks a pod enrolled whose netns is not known yet (snapshot: KeepWorkload).
func (c *Client) Keep(uid string) (string, error) { return c.request("keep", "uid", uid) }

// Unenroll removes the rules and tells node processes to drain the pod.
func (c *Client) Unenroll(uid string) (string, error) { return c.request("unenroll", "uid", uid) }

// Cleanup removes every pod's capture at once (an uninstall).
func (c *Client) Cleanup() (string, error) { return c.request("cleanup") }

// Synced releases the snapshots held by --wait-for-sync.
func (c *Client) Synced() (string, error) { return c.request("synced") }

// List returns the enrolled uids ("-" netns: kept).
func (c *Client) List() (map[string]string, error) {
	body, err := c.request("list")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 {
			out[f[0]] = f[3]
		}
	}
	return out, nil
}

// StartAgent starts `bin serve --wait-for-sync …` as a child that dies with this
// process (PR_SET_PDEATHSIG): after a restart both come back together and the pod
// list is rebuilt before any node process hears a snapshot. It returns once the
// control socket answers.
func StartAgent(bin, zdsSocket, controlSocket string, extra []string, logTo *os.File) (*exec.Cmd, error) {
	args := append([]string{"serve", "--wait-for-sync", "--zds-socket", zdsSocket,
		"--control-socket", controlSocket}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logTo, logTo
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := &Client{Socket: controlSocket, Timeout: 2 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.List(); err == nil {
			go func() {
				err := <-exited
				fmt.Fprintf(os.Stderr, "ztunnel-cni: ztunnel-agent exited (%v); exiting so that both restart\n", err)
				os.Exit(1)
			}()
			return cmd, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s exited at start: %v (see its log above)", bin, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("%s did not answer on %s within 10 s", bin, controlSocket)
		}
	}
}
