package authz

import (
	"encoding/json"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// FuzzConvert feeds arbitrary JSON to Convert: it must never panic, and what it
// accepts must be something the node's config reader accepts (masked CIDRs,
// ports in range, known scope and action). JSON without "metadata" is taken as a
// spec, so that most inputs reach the rule conversion.
func FuzzConvert(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"rules": [{}]}`,
		`{"action": "DENY", "selector": {"matchLabels": {"a": "b"}}, "rules": [{"from": [{"source": {"principals": ["*", "a*", "*b"], "notNamespaces": ["x"], "serviceAccounts": ["a/b", "c"], "ipBlocks": ["10.0.0.1/8", "::1"], "trustDomains": ["td"]}}], "to": [{"operation": {"ports": ["80"], "notPorts": ["0"], "methods": ["GET"]}}], "when": [{"key": "destination.port", "values": ["1"], "notValues": ["2"]}, {"key": "source.ip", "values": ["1.2.3.4"]}, {"key": "request.headers[x]", "values": ["y"]}]}]}`,
		`{"targetRef": {"kind": "Service", "name": "s"}}`,
		`{"action": 3, "rules": [null]}`,
		`{"metadata": {"name": "p", "namespace": "istio-system", "annotations": {"istio.io/dry-run": "true"}}, "spec": {"rules": [{"from": [{"source": {"notRemoteIpBlocks": ["1.1.1.1"]}}]}]}}`,
		`{"metadata": 1}`,
		`[1, "x", null]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		obj, ok := v.(map[string]any)
		if _, hasMeta := obj["metadata"]; !ok || !hasMeta {
			obj = map[string]any{"metadata": map[string]any{"name": "p", "namespace": "app"}, "spec": v}
		}
		pol, warnings, err := Convert(&unstructured.Unstructured{Object: obj}, "istio-system")
		if err != nil {
			return
		}
		_ = warnings
		if pol.Action != "Allow" && pol.Action != "Deny" {
			t.Fatalf("action %q", pol.Action)
		}
		if pol.Scope != "Global" && pol.Scope != "Namespace" && pol.Scope != "WorkloadSelector" {
			t.Fatalf("scope %q", pol.Scope)
		}
		if pol.Rules == nil || pol.Name == "" || pol.Namespace == "" {
			t.Fatalf("incomplete policy %+v", pol)
		}
		for _, rule := range pol.Rules {
			for _, clause := range rule {
				for _, m := range clause {
					for _, list := range [][]string{m.SourceIPs, m.NotSourceIPs, m.DestinationIPs, m.NotDestinationIPs} {
						for _, s := range list {
							p, err := netip.ParsePrefix(s)
							if err != nil || p != p.Masked() {
								t.Fatalf("CIDR %q: %v", s, err)
							}
						}
					}
					for _, list := range [][]int32{m.DestinationPorts, m.NotDestinationPorts} {
						for _, p := range list {
							if p < 0 || p > 65535 {
								t.Fatalf("port %d", p)
							}
						}
					}
				}
			}
		}
		if _, err := json.Marshal(pol); err != nil {
			t.Fatal(err)
		}
	})
}
