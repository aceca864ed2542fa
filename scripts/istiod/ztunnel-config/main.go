// Command ztunnel-config prints a ztunnel config dump the way `istioctl
// ztunnel-config <what> --file dump.json` does, with istioctl's own parser and
// printers (istio.io/istio/istioctl/pkg/writer/ztunnel/configdump at the pinned
// version), without building all of istioctl. The compatibility tests feed it our
// node process's /config_dump: a dump istioctl cannot read fails them.
//
// Usage: ztunnel-config all|workloads|services|policies|certificates|connections DUMP.json
package main

import (
	"fmt"
	"os"

	"istio.io/istio/istioctl/pkg/writer/ztunnel/configdump"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: ztunnel-config all|workloads|services|policies|certificates|connections DUMP.json")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ztunnel-config:", err)
		os.Exit(1)
	}
	w := &configdump.ConfigWriter{Stdout: os.Stdout}
	if err := w.Prime(data); err != nil {
		fmt.Fprintln(os.Stderr, "ztunnel-config:", err)
		os.Exit(1)
	}
	switch os.Args[1] {
	case "all":
		err = w.PrintFullSummary(true)
	case "workloads":
		err = w.PrintWorkloadSummary(configdump.WorkloadFilter{})
	case "services":
		err = w.PrintServiceSummary(configdump.ServiceFilter{})
	case "policies":
		err = w.PrintPolicySummary(configdump.PolicyFilter{})
	case "certificates":
		err = w.PrintSecretSummary()
	case "connections":
		err = w.PrintConnectionsSummary(configdump.ConnectionsFilter{})
	default:
		fmt.Fprintf(os.Stderr, "ztunnel-config: unknown %q\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ztunnel-config:", err)
		os.Exit(1)
	}
}
