package netns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProc writes /proc/<pid>/cgroup files as the cgroupfs and systemd drivers name
// pods, so the search is tested without a kubelet (the IP cross-check needs a real
// netns: the integration tests cover it).
func fakeProc(t *testing.T, cgroups map[string]string) string {
	root := t.TempDir()
	for pid, content := range cgroups {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const uid = "8f1d2c3e-aaaa-bbbb-cccc-0123456789ab"

func TestFindMatchesBothCgroupDrivers(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"10": "12:pids:/system.slice/containerd.service\n",
		"20": "12:pids:/kubepods/besteffort/pod" + uid + "/0123abcd\n",
	})
	got, err := Find(root, uid, nil)
	if err != nil || got != filepath.Join(root, "20", "ns", "net") {
		t.Fatalf("cgroupfs: %q %v", got, err)
	}
	systemd := fakeProc(t, map[string]string{
		"30": "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
			strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-1.scope\n",
	})
	if got, err := Find(systemd, uid, nil); err != nil || !strings.HasSuffix(got, "/30/ns/net") {
		t.Fatalf("systemd: %q %v", got, err)
	}
}

func TestFindRefusesOtherPods(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"20":      "12:pids:/kubepods/besteffort/pod" + uid + "ff/x\n", // a longer, other uid
		"21":      "12:pids:/kubepods/besteffort/podother/x\n",
		"notapid": "12:pids:/kubepods/besteffort/pod" + uid + "/x\n",
	})
	if got, err := Find(root, uid, nil); err == nil {
		t.Fatalf("found %q for a pod that has no process", got)
	} else if !strings.Contains(err.Error(), "no process of pod "+uid) {
		t.Errorf("error: %v", err)
	}
}
