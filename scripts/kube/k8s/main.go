// Not part of ztunnel: Kubernetes v1.34.4 as one multi-call binary for the test
// harness (scripts/kube/build.sh). It runs as kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet or kubectl, chosen by the basename of argv[0] (symlink it
// under those names) or else by its first argument ("kube kubectl get pods").
// One binary instead of five: ~133 MB instead of ~413 MB, and one link instead of five.
//
// Each case does what the upstream cmd/<name>/*.go main does at v1.34.4; the blank
// imports are the union of theirs (all of them are harmless in every command).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones (kube-apiserver, kube-controller-manager)

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's client auth plugins
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"

	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// The commands are built lazily: only the one that runs registers its flags.
var commands = map[string]func() int{
	"kube-apiserver": func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int {
		return cli.Run(controllermanager.NewControllerManagerCommand())
	},
	"kube-scheduler": func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
	"kubelet": func() int {
		return cli.Run(kubelet.NewKubeletCommand(context.Background()))
	},
	"kubectl": func() int {
		// As upstream: set klog's verbosity before the command is built, so that
		// logging while handling plugins and .kuberc honours -v.
		logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
		command := kubectlcmd.NewDefaultKubectlCommand()
		if err := cli.RunNoErrOutput(command); err != nil {
			kubectlutil.CheckErr(err) // pretty-prints the error and exits non-zero
		}
		return 0
	},
}

func main() {
	run, ok := commands[filepath.Base(os.Args[0])]
	if !ok && len(os.Args) > 1 {
		if run, ok = commands[os.Args[1]]; ok {
			// "kube kubectl ARGS" runs exactly like "kubectl ARGS" (cobra and
			// kubectl's plugin lookup read os.Args).
			os.Args = os.Args[1:]
		}
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "usage: kube {kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kubectl} ARGS"+
			" (or call it through a symlink of that name)")
		os.Exit(2)
	}
	os.Exit(run())
}
