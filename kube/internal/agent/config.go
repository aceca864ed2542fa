// Package agent is the Kubernetes node agent (the istio-cni role): it watches the
// API server with client-go informers, enrolls this node's pods that Istio ambient
// would enroll, and, standalone, writes the cluster's workloads, services and
// policies into the node process's local config.
package agent

import "time"

// Config is the agent's settings (flags and environment, see cmd/ztunnel-cni).
type Config struct {
	Kubeconfig    string // empty: in-cluster
	NodeName      string
	TrustDomain   string
	ClusterID     string
	DomainSuffix  string
	RootNamespace string // Istio's root namespace: its selector-less policies are global

	RulesAgentBin  string   // ztunnel-agent (C++), started as a child
	RulesAgentArgs []string // e.g. --dns-capture
	ZDSSocket      string
	ControlSocket  string
	CNISocket      string
	CNIBinDir      string
	CNIConfDir     string
	InstallCNI     bool
	// ExcludeNamespaces are never enrolled, and the CNI plugin passes their pods without
	// asking the agent, so the mesh's own pods and the system's start while it is away.
	ExcludeNamespaces []string

	MeshConfigPath string // the node process's --local-config
	ProcRoot       string
	Debounce       time.Duration
	HealthListen   string

	// OnExit is what a stopping agent leaves on the node (ExitAuto, ...); PodNamespace
	// and DaemonSetName name the agent's own DaemonSet, which ExitAuto asks about.
	OnExit        string
	PodNamespace  string
	DaemonSetName string
}
