package check

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// minKernel is the oldest Linux the node process runs on: multishot receive and
// provided-buffer rings (ztunnel/io/probe.cc asks for the same).
var minKernel = [2]int{6, 0}

// Kernel checks the running kernel's release against minKernel.
func Kernel() Result {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fail("kernel", "uname: "+err.Error(), "")
	}
	return kernelResult(unix.ByteSliceToString(u.Release[:]))
}

func kernelResult(release string) Result {
	major, minor, ok := parseRelease(release)
	if !ok {
		return fail("kernel", fmt.Sprintf("cannot read the version in the release %q", release),
			"the node process needs Linux >= 6.0")
	}
	if major < minKernel[0] || (major == minKernel[0] && minor < minKernel[1]) {
		return fail("kernel", fmt.Sprintf("Linux %s is older than 6.0", release),
			"the node process uses io_uring features of Linux 6.0 (multishot receive, provided-buffer rings): upgrade the node's kernel")
	}
	return pass("kernel", "Linux "+release)
}

// parseRelease reads "6.1.0-18-amd64" as 6, 1.
func parseRelease(release string) (int, int, bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
		digits = digits[:end] // "10rc1"
	}
	minor, err2 := strconv.Atoi(digits)
	return major, minor, err1 == nil && err2 == nil
}

// IoUring sets up (and closes) a small ring, the first thing the node process does:
// EPERM here is the seccomp profile or kernel.io_uring_disabled.
func IoUring() Result {
	var params [120]byte // struct io_uring_params, zeroed: no flags
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		disabled, _ := os.ReadFile("/proc/sys/kernel/io_uring_disabled")
		return ioUringResult(errno, strings.TrimSpace(string(disabled)))
	}
	unix.Close(int(fd))
	return pass("io_uring", "io_uring_setup works")
}

func ioUringResult(errno unix.Errno, disabledSysctl string) Result {
	detail := "io_uring_setup failed: " + errno.Error()
	switch errno {
	case unix.ENOSYS:
		return fail("io_uring", detail, "the kernel was built without io_uring (CONFIG_IO_URING): the node process cannot run on it")
	case unix.EPERM, unix.EACCES:
		if disabledSysctl != "" && disabledSysctl != "0" {
			return fail("io_uring", detail+" (kernel.io_uring_disabled="+disabledSysctl+")",
				"set the sysctl kernel.io_uring_disabled=0 on the node")
		}
		return fail("io_uring", detail+" (blocked by a seccomp profile)",
			"a seccomp profile forbids io_uring (containerd's and Docker's default profiles do): the chart runs ztunnel with seccompProfile Unconfined; if this check itself runs in a container, that container's profile is the one refusing")
	case unix.ENOMEM:
		return fail("io_uring", detail, "raise RLIMIT_MEMLOCK (ulimit -l) for the node process")
	}
	return fail("io_uring", detail, "")
}

// Iptables checks that the iptables command works and uses the nf_tables backend,
// the one the agent writes pod rules with (xtables-nft in its image).
func Iptables(command string) Result {
	path, err := exec.LookPath(command)
	if err != nil {
		return fail("iptables", fmt.Sprintf("%s not found: %v", command, err),
			"install iptables (nf_tables backend) or name it with --iptables")
	}
	version, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return fail("iptables", fmt.Sprintf("%s --version: %v: %s", path, err, strings.TrimSpace(string(version))), "")
	}
	if r := iptablesVersionResult(strings.TrimSpace(string(version))); !r.OK {
		return r
	}
	// Reading the nat table exercises the kernel side (nf_tables and the nat hooks).
	if out, err := exec.Command(path, "-t", "nat", "-S").CombinedOutput(); err != nil {
		return fail("iptables", fmt.Sprintf("%s -t nat -S: %v: %s", path, err, strings.TrimSpace(string(out))),
			"the kernel must provide nf_tables with the nat table (modules nf_tables, nft_chain_nat)")
	}
	return pass("iptables", strings.TrimSpace(string(version))+", nat table readable")
}

func iptablesVersionResult(version string) Result {
	switch {
	case strings.Contains(version, "(nf_tables)"):
		return pass("iptables", version)
	case strings.Contains(version, "(legacy)"):
		return fail("iptables", version+": the legacy backend",
			"the agent writes pod rules with the nf_tables backend (iptables-nft); rules of the legacy backend in the same pods would be evaluated apart from ours. Point --iptables at iptables-nft")
	}
	return fail("iptables", fmt.Sprintf("cannot tell the backend from %q", version), "use iptables >= 1.8 with the nf_tables backend")
}

// capabilityNames are what the agent and the node process need (the chart grants
// them): rules and sysctls (NET_ADMIN), setns into pods (SYS_ADMIN), transparent
// sockets (NET_RAW).
var capabilityNames = []struct {
	bit  uint
	name string
}{{12, "CAP_NET_ADMIN"}, {13, "CAP_NET_RAW"}, {21, "CAP_SYS_ADMIN"}}

// Capabilities checks this process's effective capabilities.
func Capabilities() Result {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fail("capabilities", err.Error(), "")
	}
	return capabilitiesResult(string(status))
}

func capabilitiesResult(status string) Result {
	var eff uint64
	found := false
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return fail("capabilities", "cannot read CapEff: "+line, "")
			}
			eff, found = n, true
		}
	}
	if !found {
		return fail("capabilities", "no CapEff line in /proc/self/status", "")
	}
	var missing []string
	for _, c := range capabilityNames {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fail("capabilities", "missing "+strings.Join(missing, ", "),
			"run the check as root on the node (the chart grants these to its DaemonSets); without them the agent cannot write pod rules or enter pods' namespaces")
	}
	return pass("capabilities", "CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN")
}

// CNIConfig checks that the node has a primary CNI network configured in dir: the
// agent chains its plugin into it, and without one no pod starts.
func CNIConfig(dir string) Result {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fail("CNI config", err.Error(),
			"the container runtime's CNI configuration directory (containerd: conf_dir in config.toml); set cni.confDir in the chart and --cni-conf-dir here to its path")
	}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".conf" && ext != ".conflist" && ext != ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fail("CNI config", err.Error(), "")
		}
		var conf map[string]any
		if err := json.Unmarshal(data, &conf); err != nil {
			return fail("CNI config", fmt.Sprintf("%s is not JSON: %v", e.Name(), err),
				"the runtime picks the first file by name; fix or remove it")
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return fail("CNI config", "no .conf or .conflist file in "+dir,
			"install the cluster's network plugin first (the agent chains into its configuration), or point --cni-conf-dir at the runtime's directory")
	}
	return pass("CNI config", dir+": "+strings.Join(names, ", "))
}

// NetnsPropagation checks that the runtime's netns directory is on a shared mount,
// so the agent's pod (mounting it with HostToContainer propagation) sees the netns
// pins the runtime creates after it started.
func NetnsPropagation(dir, mountinfoPath string) Result {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fail("netns mount propagation", dir+" does not exist",
			"the container runtime pins pod network namespaces there; start one pod first or set --netns-dir (and cni.netnsDir) to its real path")
	}
	if err != nil {
		return fail("netns mount propagation", err.Error(), "")
	}
	mountinfo, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return fail("netns mount propagation", err.Error(), "")
	}
	return propagationResult(dir, real, string(mountinfo))
}

func propagationResult(dir, real, mountinfo string) Result {
	// The mount holding `real` is the last listed one whose mount point is `real` or an
	// ancestor of it (later mounts cover earlier ones).
	best, bestShared := "", false
	scanner := bufio.NewScanner(strings.NewReader(mountinfo))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 7 {
			continue
		}
		point := unescapeMountinfo(fields[4])
		if !within(real, point) || len(point) < len(best) {
			continue
		}
		shared := false
		for _, f := range fields[6:] {
			if f == "-" {
				break
			}
			if strings.HasPrefix(f, "shared:") {
				shared = true
			}
		}
		best, bestShared = point, shared
	}
	name := dir
	if real != dir {
		name = dir + " (" + real + ")"
	}
	if best == "" {
		return fail("netns mount propagation", "no mount holds "+name, "")
	}
	if !bestShared {
		return fail("netns mount propagation", fmt.Sprintf("%s is on the mount %s, which is not shared", name, best),
			"make it a shared mount point: mount --bind "+real+" "+real+" && mount --make-shared "+real+" (systemd hosts have / shared); otherwise pods created after the agent started are invisible to it")
	}
	return pass("netns mount propagation", fmt.Sprintf("%s is on the shared mount %s", name, best))
}

func within(path, mountPoint string) bool {
	return mountPoint == "/" || path == mountPoint || strings.HasPrefix(path, mountPoint+"/")
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of /proc/*/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
