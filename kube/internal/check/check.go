// Package check is `ztunnel check`, in the spirit of `linkerd check`: pre-install
// checks of the node it runs on and of the API server, and post-install checks of a
// running mesh. Every check yields one Result; the command prints one line each, a
// summary, and exits non-zero when any failed.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	// Name identifies the check (stable: scripts and tests match on it).
	Name string `json:"name"`
	// OK is true when the check passed.
	OK bool `json:"ok"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Hint says what to do about a failure.
	Hint string `json:"hint,omitempty"`
}

// Options configures a run. The zero value of each path field means its default.
type Options struct {
	// Pre selects the pre-install checks; otherwise the post-install ones run.
	Pre bool
	// Kubeconfig names the kubeconfig file; empty: $KUBECONFIG, ~/.kube/config, or the
	// in-cluster service account.
	Kubeconfig string
	// Namespace is the release's namespace.
	Namespace string
	// CNIConfDir is the node's CNI configuration directory.
	CNIConfDir string
	// NetnsDir is where the container runtime pins pod network namespaces.
	NetnsDir string
	// Iptables is the iptables command the rules would be written with.
	Iptables string
	// CASecret overrides the CA Secret's name (else read from the ztunnel DaemonSet).
	CASecret string
	// CertMinValidity: a CA certificate that expires sooner fails (0: any validity left).
	CertMinValidity time.Duration
	// Timeout bounds each API request (0: no bound).
	Timeout time.Duration
}

// Defaults fills the zero fields of o.
func (o *Options) Defaults() {
	if o.Namespace == "" {
		o.Namespace = "ztunnel-system"
	}
	if o.CNIConfDir == "" {
		o.CNIConfDir = "/etc/cni/net.d"
	}
	if o.NetnsDir == "" {
		o.NetnsDir = "/var/run/netns"
	}
	if o.Iptables == "" {
		o.Iptables = "iptables"
	}
}

// Run runs the selected checks in order.
func Run(ctx context.Context, o Options) []Result {
	o.Defaults()
	var out []Result
	if o.Pre {
		out = append(out, Kernel(), IoUring(), Iptables(o.Iptables), Capabilities(),
			CNIConfig(o.CNIConfDir), NetnsPropagation(o.NetnsDir, "/proc/self/mountinfo"))
	}
	c, api := connect(ctx, o)
	out = append(out, api)
	if !o.Pre {
		out = append(out, c.postInstall(ctx, o)...)
	}
	return out
}

// Failed counts the results that did not pass.
func Failed(results []Result) int {
	n := 0
	for _, r := range results {
		if !r.OK {
			n++
		}
	}
	return n
}

// WriteText prints one line per check (✓ or ✗, name, detail), the hint under a
// failure, and a summary.
func WriteText(w io.Writer, title string, results []Result) {
	fmt.Fprintf(w, "%s\n", title)
	for _, r := range results {
		mark := "✓"
		if !r.OK {
			mark = "✗"
		}
		fmt.Fprintf(w, "%s %s: %s\n", mark, r.Name, r.Detail)
		if !r.OK && r.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", strings.ReplaceAll(r.Hint, "\n", "\n    "))
		}
	}
	failed := Failed(results)
	if failed == 0 {
		fmt.Fprintf(w, "\nall %d checks passed\n", len(results))
	} else {
		fmt.Fprintf(w, "\n%d of %d checks failed\n", failed, len(results))
	}
}

// report is the -o json document.
type report struct {
	Checks []Result `json:"checks"`
	Passed int      `json:"passed"`
	Failed int      `json:"failed"`
}

// WriteJSON prints the results as one JSON document.
func WriteJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	failed := Failed(results)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(report{Checks: results, Passed: len(results) - failed, Failed: failed})
}

func pass(name, detail string) Result { return Result{Name: name, OK: true, Detail: detail} }

func fail(name, detail, hint string) Result {
	return Result{Name: name, OK: false, Detail: detail, Hint: hint}
}
