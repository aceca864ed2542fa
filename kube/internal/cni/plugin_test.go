package cni

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// fakeAgent answers pod events on a unix socket with `reply` and records them.
func fakeAgent(t *testing.T, reply PodEventReply) (string, *[]PodEvent) {
	socket := filepath.Join(t.TempDir(), "cni.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var got []PodEvent
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev PodEvent
		_ = json.NewDecoder(r.Body).Decode(&ev)
		got = append(got, ev)
		_ = json.NewEncoder(w).Encode(reply)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket, &got
}

const prev = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.244.0.7/24","interface":0}]}`

func run(t *testing.T, command, socket string) (int, string) {
	return runExcluding(t, command, socket, "")
}

// runExcluding runs the plugin with `exclude` (a JSON list, or "") as excludeNamespaces.
func runExcluding(t *testing.T, command, socket, exclude string) (int, string) {
	t.Setenv("CNI_COMMAND", command)
	t.Setenv("CNI_NETNS", "/var/run/netns/cni-1")
	t.Setenv("CNI_CONTAINERID", "abc")
	t.Setenv("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc")
	extra := ""
	if exclude != "" {
		extra = `"excludeNamespaces":` + exclude + `,`
	}
	conf := `{"cniVersion":"1.0.0","name":"k8s","type":"ztunnel-cni",` + extra + `"agentSocket":"` + socket + `","prevResult":` + prev + `}`
	var out bytes.Buffer
	rc := RunPlugin(strings.NewReader(conf), &out)
	return rc, out.String()
}

func TestAddHandsThePodToTheAgentAndPassesTheResultOn(t *testing.T) {
	socket, got := fakeAgent(t, PodEventReply{Enrolled: true})
	rc, out := run(t, "ADD", socket)
	if rc != 0 || out != prev {
		t.Fatalf("rc %d, out %s", rc, out)
	}
	ev := (*got)[0]
	if ev.Command != "ADD" || ev.PodName != "web-0" || ev.PodNS != "shop" ||
		ev.Netns != "/var/run/netns/cni-1" || len(ev.IPs) != 1 || ev.IPs[0] != "10.244.0.7" {
		t.Errorf("event: %+v", ev)
	}
}

func TestAddFailsWhenTheAgentRefusesOrIsAway(t *testing.T) {
	socket, _ := fakeAgent(t, PodEventReply{Error: "node process refused it"})
	rc, out := run(t, "ADD", socket)
	if rc == 0 || !strings.Contains(out, `"code":999`) || !strings.Contains(out, "node process refused it") {
		t.Errorf("refused: rc %d, %s", rc, out)
	}
	rc, out = run(t, "ADD", filepath.Join(t.TempDir(), "nobody.sock"))
	if rc == 0 || !strings.Contains(out, "not reachable") {
		t.Errorf("agent away: rc %d, %s", rc, out)
	}
}

func TestAddPassesExcludedNamespacesWithoutTheAgent(t *testing.T) {
	away := filepath.Join(t.TempDir(), "nobody.sock")
	if rc, out := runExcluding(t, "ADD", away, `["kube-system","shop"]`); rc != 0 || out != prev {
		t.Errorf("excluded namespace with the agent away: rc %d, %s", rc, out)
	}
	// Another namespace still needs the agent.
	if rc, _ := runExcluding(t, "ADD", away, `["kube-system"]`); rc == 0 {
		t.Error("a pod outside the excluded namespaces started with the agent away")
	}
}

func TestDelNeverFails(t *testing.T) {
	if rc, _ := run(t, "DEL", filepath.Join(t.TempDir(), "nobody.sock")); rc != 0 {
		t.Errorf("DEL with the agent away: rc %d", rc)
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	if rc, out := run(t, "VERSION", ""); rc != 0 || !strings.Contains(out, `"1.0.0"`) {
		t.Errorf("VERSION: %d %s", rc, out)
	}
	if rc, out := run(t, "FROB", ""); rc == 0 || !strings.Contains(out, "unknown CNI_COMMAND") {
		t.Errorf("FROB: %d %s", rc, out)
	}
}
