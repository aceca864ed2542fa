// Package netns finds a running pod's network namespace from its UID the way a
// node agent with hostPID can: a process whose cgroup names the pod, then its
// /proc/<pid>/ns/net, cross-checked against the pod's IPs.
package netns

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupNames are the ways a pod UID appears in /proc/<pid>/cgroup: the cgroupfs
// driver writes "pod<uid>", the systemd driver "pod<uid with _ for ->.slice".
func cgroupNames(uid string) []string {
	return []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"}
}

// Find returns /proc/<pid>/ns/net of a process of the pod whose namespace holds
// one of ips (when ips is non-empty). procRoot is normally /proc.
func Find(procRoot, uid string, ips []string) (string, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return "", err
	}
	names := cgroupNames(uid)
	var mismatch string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cgroup"))
		if err != nil || !containsAny(string(data), names) {
			continue
		}
		path := filepath.Join(procRoot, e.Name(), "ns", "net")
		if len(ips) == 0 {
			return path, nil
		}
		have, err := Addresses(path)
		if err != nil {
			continue // the process just exited, or is not ours to enter
		}
		for _, ip := range ips {
			for _, h := range have {
				if h == ip {
					return path, nil
				}
			}
		}
		mismatch = fmt.Sprintf("pid %d of pod %s has addresses %v, not the pod's %v", pid, uid, have, ips)
	}
	if mismatch != "" {
		return "", fmt.Errorf("%s", mismatch)
	}
	return "", fmt.Errorf("no process of pod %s under %s", uid, procRoot)
}

func containsAny(s string, subs []string) bool {
	for _, line := range strings.Split(s, "\n") {
		for _, sub := range subs {
			// A path component, not a prefix of a longer uid.
			if strings.Contains(line, "/"+sub+"/") || strings.HasSuffix(line, "/"+sub) ||
				strings.Contains(line, "-"+sub) {
				return true
			}
		}
	}
	return false
}

// Addresses lists the IP addresses inside the network namespace at path.
func Addresses(path string) ([]string, error) {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(target)
	var out []string
	err = InNetns(target, func() error {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				out = append(out, ipn.IP.String())
			}
		}
		return nil
	})
	return out, err
}

// InNetns runs fn on a locked OS thread moved into the namespace fd. If the thread
// cannot be moved back it stays locked, so the runtime discards it.
func InNetns(fd int, fn func() error) error {
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(self)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering the network namespace: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("returning from the network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
