// Package cni is the chained CNI plugin (as istio-cni's): during pod sandbox
// creation the container runtime runs it after the network plugin, with the pod's
// netns; it hands the pod to the node agent, which captures it before any app
// container starts, and only then lets the runtime go on.
package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// PluginType is the "type" of our entry in the conflist and the binary's name.
const PluginType = "ztunnel-cni"

// DefaultAgentSocket is where the agent serves plugin requests.
const DefaultAgentSocket = "/var/run/ztunnel/cni.sock"

// PodEvent is what the plugin tells the agent about one sandbox.
type PodEvent struct {
	Command     string   `json:"command"` // ADD | DEL
	Netns       string   `json:"netns"`
	ContainerID string   `json:"containerId"`
	PodName     string   `json:"podName"`
	PodNS       string   `json:"podNamespace"`
	PodUID      string   `json:"podUid,omitempty"`
	IPs         []string `json:"ips"`
}

// PodEventReply is the agent's answer; Error fails the sandbox (ADD only).
type PodEventReply struct {
	Enrolled bool   `json:"enrolled"`
	Reason   string `json:"reason"`
	Error    string `json:"error,omitempty"`
}

type netConf struct {
	CNIVersion  string `json:"cniVersion"`
	Name        string `json:"name"`
	Type        string `json:"type"`
	AgentSocket string `json:"agentSocket"`
	// ExcludeNamespaces: pods here pass without the agent (the mesh's own, the system's).
	ExcludeNamespaces []string        `json:"excludeNamespaces"`
	PrevResult        json.RawMessage `json:"prevResult"`
}

type prevResult struct {
	IPs []struct {
		Address string `json:"address"`
	} `json:"ips"`
}

// RunPlugin is main for the CNI plugin: environment and stdin as the CNI spec says;
// the result (the previous plugin's, unchanged) on stdout; errors as CNI JSON.
func RunPlugin(stdin io.Reader, stdout io.Writer) int {
	command := os.Getenv("CNI_COMMAND")
	if command == "VERSION" {
		fmt.Fprint(stdout, `{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`)
		return 0
	}
	raw, err := io.ReadAll(stdin)
	if err != nil {
		return fail(stdout, "", "reading the network configuration: "+err.Error())
	}
	var conf netConf
	if err := json.Unmarshal(raw, &conf); err != nil {
		return fail(stdout, "", "the network configuration is not JSON: "+err.Error())
	}
	result := []byte(conf.PrevResult)
	if len(result) == 0 {
		result = []byte(fmt.Sprintf(`{"cniVersion":%q}`, conf.CNIVersion))
	}
	switch command {
	case "CHECK", "GC", "STATUS":
		return 0
	case "ADD", "DEL":
	default:
		return fail(stdout, conf.CNIVersion, fmt.Sprintf("unknown CNI_COMMAND %q", command))
	}
	ev := PodEvent{Command: command, Netns: os.Getenv("CNI_NETNS"),
		ContainerID: os.Getenv("CNI_CONTAINERID")}
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS"), ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAME":
			ev.PodName = v
		case "K8S_POD_NAMESPACE":
			ev.PodNS = v
		case "K8S_POD_UID":
			ev.PodUID = v
		}
	}
	var prev prevResult
	_ = json.Unmarshal(conf.PrevResult, &prev)
	for _, ip := range prev.IPs {
		addr, _, _ := strings.Cut(ip.Address, "/")
		ev.IPs = append(ev.IPs, addr)
	}
	if command == "ADD" && slices.Contains(conf.ExcludeNamespaces, ev.PodNS) {
		// Never enrolled, and must start even while the agent is away (the node
		// process's own pod, the system's): not asked.
		_, _ = stdout.Write(result)
		return 0
	}
	socket := conf.AgentSocket
	if socket == "" {
		socket = DefaultAgentSocket
	}
	reply, err := send(socket, ev)
	if command == "DEL" {
		// DEL must never block a pod's removal: the agent also unenrolls pods that
		// leave the API, and removes rules with the netns.
		return 0
	}
	if ev.PodName == "" {
		// Not a Kubernetes pod (no K8S_ args): nothing for a mesh to do.
		_, _ = stdout.Write(result)
		return 0
	}
	if err != nil {
		return fail(stdout, conf.CNIVersion, fmt.Sprintf(
			"pod %s/%s: the ztunnel node agent is not reachable at %s (%v); the pod waits until it is, so that it is never started uncaptured",
			ev.PodNS, ev.PodName, socket, err))
	}
	if reply.Error != "" {
		return fail(stdout, conf.CNIVersion, fmt.Sprintf("pod %s/%s: %s", ev.PodNS, ev.PodName, reply.Error))
	}
	_, _ = stdout.Write(result)
	return 0
}

func send(socket string, ev PodEvent) (PodEventReply, error) {
	client := &http.Client{
		// The agent answers an ADD once the node process serves the pod (or refused).
		Timeout: 60 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	resp, err := client.Post("http://agent/v1/pod-event", "application/json", Encode(ev))
	if err != nil {
		return PodEventReply{}, err
	}
	defer resp.Body.Close()
	var reply PodEventReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&reply); err != nil {
		return PodEventReply{}, fmt.Errorf("unreadable answer (HTTP %d): %w", resp.StatusCode, err)
	}
	return reply, nil
}

func fail(stdout io.Writer, version, msg string) int {
	if version == "" {
		version = "1.0.0"
	}
	out, _ := json.Marshal(map[string]any{"cniVersion": version, "code": 999, "msg": msg})
	_, _ = stdout.Write(out)
	fmt.Fprintln(os.Stderr, "ztunnel-cni:", msg)
	return 1
}

// Encode is used by tests and the agent to build requests.
func Encode(ev PodEvent) *bytes.Reader {
	b, _ := json.Marshal(ev)
	return bytes.NewReader(b)
}
