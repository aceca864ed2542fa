package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"ztunnel.dev/kube/internal/check"
)

// runCheck is `ztunnel check` (also `ztunnel-cni check`): 0 when every check
// passed, 1 when one failed, 2 on a usage error.
func runCheck(prog string, args []string) int {
	fs := flag.NewFlagSet(prog+" check", flag.ContinueOnError)
	e := &envFlags{fs: fs}
	pre := fs.Bool("pre", false, "pre-install checks of this node and the API server (run on each node, as root); default: the post-install checks of a running mesh")
	output := fs.String("o", "text", "output: text or json")
	var o check.Options
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty: $KUBECONFIG, ~/.kube/config, or the in-cluster service account")
	namespace := e.String("namespace", "ZTUNNEL_NAMESPACE", "ztunnel-system", "the release's namespace")
	cniConfDir := e.String("cni-conf-dir", "CNI_CONF_DIR", "/etc/cni/net.d", "the node's CNI configuration directory (--pre)")
	netnsDir := fs.String("netns-dir", "/var/run/netns", "where the container runtime pins pod network namespaces (--pre)")
	iptables := fs.String("iptables", "iptables", "the iptables command (--pre)")
	fs.StringVar(&o.CASecret, "ca-secret", "", "the CA Secret; empty: the one the ztunnel DaemonSet mounts")
	fs.DurationVar(&o.CertMinValidity, "cert-min-validity", 30*24*time.Hour, "fail when the CA expires sooner than this")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Second, "bound on each API request")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	for _, b := range e.bad {
		fmt.Fprintf(os.Stderr, "%s check: %s\n", prog, b)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s check: unexpected argument %q\n", prog, fs.Arg(0))
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(os.Stderr, "%s check: -o %q: use text or json\n", prog, *output)
		return 2
	}
	o.Pre, o.Namespace, o.CNIConfDir, o.NetnsDir, o.Iptables = *pre, *namespace, *cniConfDir, *netnsDir, *iptables
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := check.Run(ctx, o)
	if *output == "json" {
		if err := check.WriteJSON(os.Stdout, results); err != nil {
			fmt.Fprintf(os.Stderr, "%s check: %v\n", prog, err)
			return 1
		}
	} else {
		title := "ztunnel post-install checks (namespace " + o.Namespace + ")"
		if o.Pre {
			title = "ztunnel pre-install checks"
		}
		check.WriteText(os.Stdout, title, results)
	}
	if check.Failed(results) > 0 {
		return 1
	}
	return 0
}
