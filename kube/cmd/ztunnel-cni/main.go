// ztunnel-cni: the Kubernetes node agent (istio-cni's role) and, when a container
// runtime runs it with CNI_COMMAND set, the chained CNI plugin.
//
//	ztunnel-cni agent [flags]   watch the API server, capture this node's ambient pods
//	ztunnel-cni check [--pre]   pre-install / post-install checks (also as `ztunnel check`)
//	ztunnel-cni version
//
// Every flag also reads an environment variable (named in --help); a flag wins.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"ztunnel.dev/kube/internal/agent"
	"ztunnel.dev/kube/internal/cni"
)

var version = "dev"

func main() {
	if os.Getenv("CNI_COMMAND") != "" {
		os.Exit(cni.RunPlugin(os.Stdin, os.Stdout))
	}
	// Installed as (or linked to) `ztunnel`, it is the user's CLI: `ztunnel check`.
	if filepath.Base(os.Args[0]) == "ztunnel" {
		if len(os.Args) >= 2 && os.Args[1] == "check" {
			os.Exit(runCheck("ztunnel", os.Args[2:]))
		}
		fmt.Fprint(os.Stderr, "usage: ztunnel check [--pre] [-o json] [flags]   (ztunnel check --help lists them)\n")
		os.Exit(2)
	}
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "check":
		os.Exit(runCheck("ztunnel-cni", os.Args[2:]))
	case "agent":
		os.Exit(runAgent(os.Args[2:]))
	case "cleanup-annotations":
		os.Exit(runSweep(os.Args[2:]))
	case "version", "--version":
		fmt.Println("ztunnel-cni", version)
	case "help", "--help", "-h":
		usage(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "ztunnel-cni: unknown command %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
}

func usage(w *os.File) {
	fmt.Fprint(w, `usage: ztunnel-cni agent [flags]     (ztunnel-cni agent --help lists them)
       ztunnel-cni cleanup-annotations [--kubeconfig FILE]   (after an uninstall)
       ztunnel-cni check [--pre] [-o json]   (ztunnel check: pre- and post-install checks)
       ztunnel-cni version
Run by a container runtime with CNI_COMMAND set, it is the chained CNI plugin.
`)
}

// runSweep removes the redirection annotation left on any pod (the chart's
// post-delete hook).
func runSweep(args []string) int {
	fs := flag.NewFlagSet("ztunnel-cni cleanup-annotations", flag.ContinueOnError)
	e := &envFlags{fs: fs}
	kubeconfig := e.String("kubeconfig", "KUBECONFIG", "", "kubeconfig file; empty: the in-cluster service account")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := agent.SweepAnnotations(ctx, *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel-cni cleanup-annotations: %v\n", err)
		return 1
	}
	fmt.Printf("removed the %s annotation from %d pods\n", "ambient.istio.io/redirection", n)
	return 0
}

// envFlags registers flags whose defaults come from environment variables.
type envFlags struct {
	fs  *flag.FlagSet
	bad []string
}

func (e *envFlags) env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}

func (e *envFlags) String(name, envName, fallback, help string) *string {
	return e.fs.String(name, e.env(envName, fallback), help+" (env "+envName+")")
}

// OptionalString is String where an empty value is a choice: the variable set to ""
// turns the thing off rather than falling back to the default.
func (e *envFlags) OptionalString(name, envName, fallback, help string) *string {
	v := fallback
	if s, ok := os.LookupEnv(envName); ok {
		v = s
	}
	return e.fs.String(name, v, help+" (env "+envName+")")
}

func (e *envFlags) Bool(name, envName string, fallback bool, help string) *bool {
	v := fallback
	if s := e.env(envName, ""); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			e.bad = append(e.bad, fmt.Sprintf("%s=%q is not a boolean", envName, s))
		}
		v = b
	}
	return e.fs.Bool(name, v, help+" (env "+envName+")")
}

func (e *envFlags) Duration(name, envName string, fallback time.Duration, help string) *time.Duration {
	v := fallback
	if s := e.env(envName, ""); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			e.bad = append(e.bad, fmt.Sprintf("%s=%q is not a duration (e.g. 100ms)", envName, s))
		}
		v = d
	}
	return e.fs.Duration(name, v, help+" (env "+envName+")")
}

// excludeList is the comma-separated list plus the agent's own namespace, deduplicated.
func excludeList(list, own string) []string {
	var out []string
	seen := map[string]bool{}
	for _, ns := range append(strings.Split(list, ","), own) {
		ns = strings.TrimSpace(ns)
		if ns != "" && !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	return out
}

func runAgent(args []string) int {
	fs := flag.NewFlagSet("ztunnel-cni agent", flag.ContinueOnError)
	// Only klog's verbosity: its file-logging flags do not belong in a container.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.Var(klogFlags.Lookup("v").Value, "v", "log verbosity: 0 changes, 1 each captured sandbox, 2 config writes and retries, 3 every skipped pod")
	e := &envFlags{fs: fs}
	host, _ := os.Hostname()
	self, _ := os.Executable()
	cfg := agent.Config{}
	kubeconfig := e.String("kubeconfig", "KUBECONFIG", "", "kubeconfig file; empty: the in-cluster service account")
	node := e.String("node-name", "NODE_NAME", host, "this node's name (spec.nodeName of its pods)")
	trust := e.String("trust-domain", "TRUST_DOMAIN", "cluster.local", "SPIFFE trust domain of workload identities")
	cluster := e.String("cluster-id", "CLUSTER_ID", "Kubernetes", "cluster name in workload uids and metrics")
	suffix := e.String("domain-suffix", "DOMAIN_SUFFIX", "cluster.local", "cluster DNS suffix of service hostnames")
	root := e.String("root-namespace", "ROOT_NAMESPACE", "istio-system", "Istio root namespace: its AuthorizationPolicies without a selector apply mesh-wide")
	rulesBin := e.String("rules-agent", "ZTUNNEL_RULES_AGENT", filepath.Join(filepath.Dir(self), "ztunnel-agent"), "the ztunnel-agent binary (capture rules and ZDS), started as a child; empty: one already runs on --control-socket")
	dns := e.Bool("dns-capture", "DNS_CAPTURE", false, "also redirect the pods' DNS (port 53) to the node process's 15053")
	zds := e.String("zds-socket", "INPOD_UDS", "/var/run/ztunnel/ztunnel.sock", "ZDS socket node processes connect to")
	control := e.String("control-socket", "ZTUNNEL_AGENT_SOCKET", "/var/run/ztunnel/agent.sock", "ztunnel-agent's control socket")
	cniSocket := e.String("cni-socket", "ZTUNNEL_CNI_SOCKET", cni.DefaultAgentSocket, "where the CNI plugin reaches this agent")
	binDir := e.String("cni-bin-dir", "CNI_BIN_DIR", "/opt/cni/bin", "the node's CNI plugin directory")
	confDir := e.String("cni-conf-dir", "CNI_CONF_DIR", "/etc/cni/net.d", "the node's CNI network config directory")
	install := e.Bool("install-cni", "INSTALL_CNI", true, "install and chain the CNI plugin so new pods are captured before they start")
	meshConfig := e.OptionalString("mesh-config", "ZTUNNEL_MESH_CONFIG", "/var/run/ztunnel/mesh.json", "the local config file written for the node process (its --local-config); empty: do not write one (a control plane serves the node process)")
	procRoot := e.String("proc-root", "PROC_ROOT", "/proc", "the host's /proc (hostPID), to find running pods' network namespaces")
	debounce := e.Duration("debounce", "ZTUNNEL_CONFIG_DEBOUNCE", 100*time.Millisecond, "how long a burst of API changes is coalesced before the config is written")
	unenrollGrace := e.Duration("unenroll-grace", "ZTUNNEL_UNENROLL_GRACE", 30*time.Second, "after a pod leaves the mesh, how long its live connections keep their routing (new ones go direct at once); at least the node process's --drain-timeout")
	exclude := e.String("exclude-namespaces", "EXCLUDE_NAMESPACES", "kube-system", "comma-separated namespaces never enrolled, whose new pods the CNI plugin passes without the agent; the agent's own namespace (POD_NAMESPACE) is added")
	onExit := e.String("on-exit", "ZTUNNEL_CNI_ON_EXIT", "auto", "what a stopping agent leaves: auto (in a pod: keep while its DaemonSet lives on, cleanup once it is deleted; outside a pod: unchain), keep (plugin chained, pods captured), unchain (pods captured), cleanup (nothing of ours)")
	dsName := e.String("daemonset-name", "DAEMONSET_NAME", "ztunnel-cni", "this agent's DaemonSet (in POD_NAMESPACE), which --on-exit=auto asks about")
	health := e.String("health-listen", "HEALTH_LISTEN", "127.0.0.1:15031", "address of /healthz/ready (200 once the pod list is rebuilt); empty: none")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ztunnel-cni agent: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if len(e.bad) > 0 {
		fmt.Fprintf(os.Stderr, "ztunnel-cni agent: %s\n", strings.Join(e.bad, "; "))
		return 2
	}
	if *node == "" {
		fmt.Fprintln(os.Stderr, "ztunnel-cni agent: --node-name (NODE_NAME) is empty")
		return 2
	}
	if *debounce < 0 || *debounce > 10*time.Second {
		fmt.Fprintln(os.Stderr, "ztunnel-cni agent: --debounce must be between 0 and 10s")
		return 2
	}
	cfg = agent.Config{
		Kubeconfig: *kubeconfig, NodeName: *node, TrustDomain: *trust, ClusterID: *cluster,
		DomainSuffix: *suffix, RootNamespace: *root, RulesAgentBin: *rulesBin,
		ZDSSocket: *zds, ControlSocket: *control, CNISocket: *cniSocket, CNIBinDir: *binDir,
		CNIConfDir: *confDir, InstallCNI: *install, MeshConfigPath: *meshConfig,
		ProcRoot: *procRoot, Debounce: *debounce, HealthListen: *health,
		ExcludeNamespaces: excludeList(*exclude, os.Getenv("POD_NAMESPACE")),
		OnExit:            *onExit, PodNamespace: os.Getenv("POD_NAMESPACE"), DaemonSetName: *dsName,
	}
	switch *onExit {
	case agent.ExitAuto, agent.ExitKeep, agent.ExitUnchain, agent.ExitCleanup:
	default:
		fmt.Fprintf(os.Stderr, "ztunnel-cni agent: --on-exit %q: want auto, keep, unchain or cleanup\n", *onExit)
		return 2
	}
	if *dns {
		cfg.RulesAgentArgs = append(cfg.RulesAgentArgs, "--dns-capture")
	}
	if *unenrollGrace < 0 || *unenrollGrace > 24*time.Hour {
		fmt.Fprintln(os.Stderr, "ztunnel-cni agent: --unenroll-grace must be between 0 and 24h")
		return 2
	}
	cfg.RulesAgentArgs = append(cfg.RulesAgentArgs, "--unenroll-grace", fmt.Sprintf("%dms", unenrollGrace.Milliseconds()))
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel-cni agent: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	klog.InfoS("ztunnel-cni agent starting", "version", version, "node", cfg.NodeName)
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel-cni agent: %v\n", err)
		return 1
	}
	klog.InfoS("ztunnel-cni agent stopped; enrolled pods stay captured")
	return 0
}
