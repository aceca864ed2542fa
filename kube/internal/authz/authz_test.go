package authz

// Expected values follow istio/istio pilot/pkg/serviceregistry/ambient/authorization.go
// (cited "a.go:LINE", commit 86c9f01f) and its authorization_test.go (cited
// "a_test.go:LINE"), and the node's matching rules in /work/shared/DESIGN.md §4.

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"ztunnel.dev/kube/internal/meshstate"
)

const root = "istio-system"

// policy builds the object a dynamic informer would deliver; spec is JSON ("" for
// no spec) and ns defaults to "app".
func policy(t testing.TB, ns, spec string, annotations map[string]any) *unstructured.Unstructured {
	if ns == "" {
		ns = "app"
	}
	meta := map[string]any{"name": "p", "namespace": ns}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	obj := map[string]any{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": meta}
	if spec != "" {
		var s any
		if err := json.Unmarshal([]byte(spec), &s); err != nil {
			t.Fatalf("bad test spec %s: %v", spec, err)
		}
		obj["spec"] = s
	}
	return &unstructured.Unstructured{Object: obj}
}

func compact(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

type want struct {
	scope, action string
	dryRun        bool
	rules         string            // JSON of Policy.Rules; "" skips the check
	selector      map[string]string // checked when scope is WorkloadSelector
	warn          []string          // each must be a substring of some warning
	noWarn        bool
	err           string // substring of the error
	skip          bool   // the error is ErrNotForZtunnel
}

func check(t *testing.T, obj *unstructured.Unstructured, w want) {
	t.Helper()
	pol, warnings, err := Convert(obj, root)
	if w.err != "" || w.skip {
		if err == nil {
			t.Fatalf("want error %q, got policy %+v", w.err, pol)
		}
		if !strings.Contains(err.Error(), w.err) {
			t.Errorf("error %q does not contain %q", err, w.err)
		}
		if !strings.Contains(err.Error(), "AuthorizationPolicy ") {
			t.Errorf("error %q does not name the policy", err)
		}
		if errors.Is(err, ErrNotForZtunnel) != w.skip {
			t.Errorf("errors.Is(%q, ErrNotForZtunnel) = %v, want %v", err, !w.skip, w.skip)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if w.scope != "" && pol.Scope != w.scope {
		t.Errorf("scope %q, want %q", pol.Scope, w.scope)
	}
	if w.action == "" {
		w.action = "Allow"
	}
	if pol.Action != w.action {
		t.Errorf("action %q, want %q", pol.Action, w.action)
	}
	if pol.DryRun != w.dryRun {
		t.Errorf("dryRun %v, want %v", pol.DryRun, w.dryRun)
	}
	if pol.Scope == "WorkloadSelector" && !reflect.DeepEqual(pol.Selector, w.selector) {
		t.Errorf("selector %#v, want %#v", pol.Selector, w.selector)
	}
	if pol.Scope != "WorkloadSelector" && pol.Selector != nil {
		t.Errorf("selector %v on a %s policy", pol.Selector, pol.Scope)
	}
	if w.rules != "" {
		got := compact(t, mustJSON(pol.Rules)) // map key order, as want's
		if got != compact(t, w.rules) {
			t.Errorf("rules\n got %s\nwant %s", got, compact(t, w.rules))
		}
	}
	for _, s := range w.warn {
		found := false
		for _, line := range warnings {
			found = found || strings.Contains(line, s)
		}
		if !found {
			t.Errorf("no warning contains %q; warnings: %q", s, warnings)
		}
	}
	if w.noWarn && len(warnings) > 0 {
		t.Errorf("unexpected warnings %q", warnings)
	}
	for _, line := range warnings {
		if strings.Contains(line, "\n") {
			t.Errorf("warning spans lines: %q", line)
		}
	}
}

func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		name, ns, spec string
		ann            map[string]any
		want
	}{
		// --- scope: a.go:426-433
		{name: "no selector: Namespace", spec: `{}`, want: want{scope: "Namespace", rules: `[]`, noWarn: true}},
		{name: "no selector in root namespace: Global", ns: root, spec: `{}`, want: want{scope: "Global"}},
		{name: "null selector is no selector", spec: `{"selector": null}`, want: want{scope: "Namespace"}},
		{name: "selector: WorkloadSelector with its labels", spec: `{"selector": {"matchLabels": {"app": "a", "v": "1"}}}`,
			want: want{scope: "WorkloadSelector", selector: map[string]string{"app": "a", "v": "1"}, noWarn: true}},
		{name: "selector in root namespace stays WorkloadSelector", ns: root, spec: `{"selector": {"matchLabels": {"app": "a"}}}`,
			want: want{scope: "WorkloadSelector", selector: map[string]string{"app": "a"}}},
		// GetSelector() != nil with nil matchLabels: workloads.go buildWorkloadPolicies
		// filters GetLabelSelector() == nil, so the policy is attached nowhere.
		{name: "selector without matchLabels", spec: `{"selector": {}}`,
			want: want{scope: "WorkloadSelector", selector: nil, warn: []string{"spec.selector: has no matchLabels"}}},
		// jsonpb allocates an empty map: labels.SubsetOf selects every workload.
		{name: "selector with empty matchLabels", spec: `{"selector": {"matchLabels": {}}}`,
			want: want{scope: "WorkloadSelector", selector: map[string]string{}, noWarn: true}},

		// --- targetRef(s): a.go:420-424 returns nil, nil (not sent); a_test.go:61
		{name: "targetRef", spec: `{"targetRef": {"kind": "Service", "name": "s"}}`, want: want{skip: true, err: "spec.targetRef"}},
		{name: "targetRefs", spec: `{"targetRefs": [{"kind": "Gateway", "name": "w"}]}`, want: want{skip: true, err: "spec.targetRefs"}},
		{name: "targetRef wins over a broken rest", spec: `{"targetRef": {}, "rules": 7}`, want: want{skip: true}},
		{name: "empty targetRefs is no targetRef", spec: `{"targetRefs": []}`, want: want{scope: "Namespace"}},

		// --- action: a.go:434-444; a_test.go:104,138
		{name: "action defaults to ALLOW", spec: `{"rules": [{}]}`, want: want{action: "Allow"}},
		{name: "DENY", spec: `{"action": "DENY", "rules": [{}]}`, want: want{action: "Deny"}},
		{name: "AUDIT is not sent", spec: `{"action": "AUDIT", "rules": [{}]}`, want: want{skip: true, err: "AUDIT"}},
		{name: "CUSTOM is not sent", spec: `{"action": "CUSTOM", "provider": {"name": "x"}, "rules": [{}]}`, want: want{skip: true, err: "CUSTOM"}},
		{name: "enum number (jsonpb)", spec: `{"action": 1}`, want: want{action: "Deny"}},
		{name: "lower-case action", spec: `{"action": "deny"}`, want: want{err: "spec.action"}},
		{name: "action of the wrong type", spec: `{"action": true}`, want: want{err: "spec.action"}},
		{name: "action number out of range", spec: `{"action": 9}`, want: want{err: "spec.action"}},

		// --- dry-run: a.go:401-408 (strconv.ParseBool; a bad value is enforced)
		{name: "dry-run true", spec: `{}`, ann: map[string]any{DryRunAnnotation: "true"}, want: want{dryRun: true}},
		{name: "dry-run T", spec: `{}`, ann: map[string]any{DryRunAnnotation: "T"}, want: want{dryRun: true}},
		{name: "dry-run false", spec: `{}`, ann: map[string]any{DryRunAnnotation: "false"}, want: want{dryRun: false, noWarn: true}},
		{name: "dry-run empty is not parsed", spec: `{}`, ann: map[string]any{DryRunAnnotation: ""}, want: want{noWarn: true}},
		{name: "dry-run unparsable is enforced", spec: `{}`, ann: map[string]any{DryRunAnnotation: "yes"},
			want: want{dryRun: false, warn: []string{"metadata.annotations[istio.io/dry-run]: \"yes\" is not a bool"}}},
		{name: "dry-run not a string", spec: `{}`, ann: map[string]any{DryRunAnnotation: true}, want: want{err: "metadata.annotations[istio.io/dry-run]"}},

		// --- empty policies. spec {}: no Group at all (a.go:445-465), a policy that
		// matches nothing: ALLOW-nothing = deny all in scope; DENY-nothing = no-op.
		{name: "spec {}: allow nothing", spec: `{}`, want: want{rules: `[]`}},
		{name: "no spec at all", want: want{rules: `[]`}},
		{name: "spec null", spec: `null`, want: want{rules: `[]`}},
		{name: "DENY without rules", spec: `{"action": "DENY"}`, want: want{action: "Deny", rules: `[]`}},
		// rules: [{}] is a Group with no clauses (handleRule's rules := []{} at
		// a.go:622), which matches everything (hasEffectiveRules, a.go:559-562).
		{name: "one empty rule: match all", spec: `{"rules": [{}]}`, want: want{rules: `[[]]`, noWarn: true}},
		{name: "DENY one empty rule: deny all", spec: `{"action": "DENY", "rules": [{}]}`, want: want{action: "Deny", rules: `[[]]`}},
		{name: "empty from/to/when lists add no clause", spec: `{"rules": [{"from": [], "to": [], "when": []}]}`, want: want{rules: `[[]]`}},

		// --- from: one match per source, OR-ed in one clause (a.go:601-627)
		{name: "source fields", spec: `{"rules": [{"from": [{"source": {
			"principals": ["cluster.local/ns/a/sa/b"], "notPrincipals": ["*"],
			"namespaces": ["a"], "notNamespaces": ["b"],
			"ipBlocks": ["10.0.0.0/8"], "notIpBlocks": ["10.1.0.0/16"]}}]}]}`,
			want: want{noWarn: true, rules: `[[[{"principals":[{"Exact":"cluster.local/ns/a/sa/b"}],"notPrincipals":[{"Presence":""}],
				"namespaces":[{"Exact":"a"}],"notNamespaces":[{"Exact":"b"}],
				"sourceIps":["10.0.0.0/8"],"notSourceIps":["10.1.0.0/16"]}]]]`}},
		// a.go:702-719: "ns/sa" or a bare "sa" in the policy's namespace; split at the first "/".
		{name: "serviceAccounts", spec: `{"rules": [{"from": [{"source": {"serviceAccounts": ["sa", "other/sb", "x/y/z"], "notServiceAccounts": ["bad"]}}]}]}`,
			want: want{rules: `[[[{"serviceAccounts":[{"namespace":"app","serviceAccount":"sa"},{"namespace":"other","serviceAccount":"sb"},
				{"namespace":"x","serviceAccount":"y/z"}],"notServiceAccounts":[{"namespace":"app","serviceAccount":"bad"}]}]]]`}},
		{name: "two sources OR-ed in one clause", spec: `{"rules": [{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"namespaces": ["b"]}}]}]}`,
			want: want{rules: `[[[{"namespaces":[{"Exact":"a"}]},{"namespaces":[{"Exact":"b"}]}]]]`}},

		// --- to: one match per operation, ports only (a.go:587-600); the to clause
		// comes first, then from, then one clause per condition (a.go:622-649).
		{name: "ports", spec: `{"rules": [{"to": [{"operation": {"ports": ["80", "0443"]}}, {"operation": {"notPorts": ["0", "65535"]}}]}]}`,
			want: want{noWarn: true, rules: `[[[{"destinationPorts":[80,443]},{"notDestinationPorts":[0,65535]}]]]`}},
		{name: "to, from and when are AND-ed in that order", spec: `{"rules": [{
			"from": [{"source": {"namespaces": ["a"]}}], "to": [{"operation": {"ports": ["80"]}}],
			"when": [{"key": "source.ip", "values": ["1.2.3.4"]}, {"key": "destination.port", "notValues": ["81"]}]}]}`,
			want: want{rules: `[[[{"destinationPorts":[80]}],[{"namespaces":[{"Exact":"a"}]}],
				[{"sourceIps":["1.2.3.4/32"]}],[{"notDestinationPorts":[81]}]]]`}},
		{name: "rules stay separate (OR-ed)", spec: `{"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}, {"to": [{"operation": {"ports": ["1"]}}]}]}`,
			want: want{rules: `[[[{"namespaces":[{"Exact":"a"}]}]],[[{"destinationPorts":[1]}]]]`}},

		// --- when: the five L4 keys, values and notValues (a.go:629-665)
		{name: "when keys", spec: `{"rules": [{"when": [
			{"key": "source.ip", "values": ["10.0.0.1"], "notValues": ["10.0.0.2/31"]},
			{"key": "source.namespace", "values": ["a*"], "notValues": ["*b"]},
			{"key": "source.principal", "values": ["*"], "notValues": ["x"]},
			{"key": "destination.ip", "values": ["2001:db8::1"], "notValues": ["2001:db8::/32"]},
			{"key": "destination.port", "values": ["8080"], "notValues": ["9090"]}]}]}`,
			want: want{noWarn: true, rules: `[[
				[{"sourceIps":["10.0.0.1/32"],"notSourceIps":["10.0.0.2/31"]}],
				[{"namespaces":[{"Prefix":"a"}],"notNamespaces":[{"Suffix":"b"}]}],
				[{"principals":[{"Presence":""}],"notPrincipals":[{"Exact":"x"}]}],
				[{"destinationIps":["2001:db8::1/128"],"notDestinationIps":["2001:db8::/32"]}],
				[{"destinationPorts":[8080],"notDestinationPorts":[9090]}]]]`}},

		// --- string matches: a.go:677-700 ("*" first, then leading, then trailing *)
		{name: "string matches", spec: `{"rules": [{"from": [{"source": {"principals": ["*", "*.local", "spiffe*", "exact", "*mid*", "**", "a*b", ""]}}]}]}`,
			want: want{rules: `[[[{"principals":[{"Presence":""},{"Suffix":".local"},{"Prefix":"spiffe"},{"Exact":"exact"},
				{"Suffix":"mid*"},{"Suffix":"*"},{"Exact":"a*b"},{"Exact":""}]}]]]`}},

		// --- addresses: a.go:733-768 (no "/" → full length); host bits cleared,
		// zone dropped (Address carries only the bytes).
		{name: "addresses", spec: `{"rules": [{"from": [{"source": {"ipBlocks": ["10.1.2.3", "10.1.2.3/8", "::1", "fe80::1%eth0", "::ffff:10.0.0.1", "0.0.0.0/0"]}}]}]}`,
			want: want{rules: `[[[{"sourceIps":["10.1.2.3/32","10.0.0.0/8","::1/128","fe80::1/128","::ffff:10.0.0.1/128","0.0.0.0/0"]}]]]`}},

		// --- L7 in ALLOW: the whole rule is dropped, it never matches (a.go:650-654;
		// a_test.go:172). With no rule left the policy allows nothing.
		{name: "ALLOW with methods", spec: `{"rules": [{"to": [{"operation": {"methods": ["GET"], "ports": ["80"]}}]}]}`,
			want: want{rules: `[]`, warn: []string{
				"spec.rules[0].to[0].operation.methods: L7 attribute; ztunnel cannot match it, the rule never matches",
				"spec.rules[0]: ALLOW rule uses L7 attributes; dropped"}}},
		{name: "ALLOW keeps its L4-only rules", spec: `{"rules": [
			{"from": [{"source": {"requestPrincipals": ["*"]}}]},
			{"from": [{"source": {"namespaces": ["a"]}}]}]}`,
			want: want{rules: `[[[{"namespaces":[{"Exact":"a"}]}]]]`, warn: []string{"spec.rules[0].from[0].source.requestPrincipals"}}},
		{name: "ALLOW with an L7 condition", spec: `{"rules": [{"from": [{"source": {"namespaces": ["a"]}}], "when": [{"key": "request.auth.presenter", "values": ["x"]}]}]}`,
			want: want{rules: `[]`, warn: []string{`spec.rules[0].when[0].key "request.auth.presenter": L7 attribute`}}},
		// Not in l4WhenAttributes (a.go:659-665), so L7 for ztunnel.
		{name: "ALLOW with source.serviceAccount condition", spec: `{"rules": [{"when": [{"key": "source.serviceAccount", "values": ["a/b"]}]}]}`,
			want: want{rules: `[]`}},
		{name: "ALLOW with a keyless condition", spec: `{"rules": [{"when": [{"values": ["x"]}]}]}`,
			want: want{rules: `[]`, warn: []string{`spec.rules[0].when[0].key ""`}}},

		// --- L7 in DENY: the L7 fields are left out, the rest kept (a.go:650-652).
		// a_test.go:266: principals kept, more restrictive than requested.
		{name: "DENY mixed L4 and L7", spec: `{"action": "DENY", "rules": [{"from": [{"source": {
			"principals": ["cluster.local/ns/foo/sa/bar"], "notRequestPrincipals": ["example.com/sub-1"]}}]}]}`,
			want: want{action: "Deny", rules: `[[[{"principals":[{"Exact":"cluster.local/ns/foo/sa/bar"}]}]]]`,
				warn: []string{"source.notRequestPrincipals: L7 attribute; ztunnel cannot match it, left out of the DENY rule",
					"spec.rules[0]: DENY rule enforced without its L7 attributes"}}},
		// a_test.go:236: only L7 → an empty match, which ztunnel skips: no effect.
		{name: "DENY only L7", spec: `{"action": "DENY", "rules": [{"from": [{"source": {"notRequestPrincipals": ["x"]}}]}]}`,
			want: want{action: "Deny", rules: `[[[{}]]]`, warn: []string{"spec.rules[0]: a clause has only empty matches", "this DENY policy has no enforceable rule"}}},
		// a_test.go:371 and :407: an L7-only clause AND-ed with L4 ones voids the rule.
		{name: "DENY L4 from and L7 when", spec: `{"action": "DENY", "rules": [{"from": [{"source": {"principals": ["p"]}}], "when": [{"key": "request.headers[x-token]", "values": ["s"]}]}]}`,
			want: want{action: "Deny", rules: `[[[{"principals":[{"Exact":"p"}]}],[{}]]]`, warn: []string{"no enforceable rule"}}},
		{name: "DENY L4 from and L7 to", spec: `{"action": "DENY", "rules": [{"from": [{"source": {"principals": ["p"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}`,
			want: want{action: "Deny", rules: `[[[{}],[{"principals":[{"Exact":"p"}]}]]]`, warn: []string{"no enforceable rule"}}},
		{name: "DENY methods with ports keeps the ports", spec: `{"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"], "ports": ["80"]}}]}]}`,
			want: want{action: "Deny", rules: `[[[{"destinationPorts":[80]}]]]`, warn: []string{"DENY rule enforced without its L7 attributes"}}},
		// a_test.go:299 and :340: another rule keeps the policy effective.
		{name: "DENY L7 rule beside an empty rule", spec: `{"action": "DENY", "rules": [{}, {"from": [{"source": {"notRequestPrincipals": ["x"]}}]}]}`,
			want: want{action: "Deny", rules: `[[],[[{}]]]`}},

		// every L7 field (httpOperations/httpSources, a.go:503-543)
		{name: "ALLOW hosts", spec: `{"rules": [{"to": [{"operation": {"hosts": ["h"]}}]}]}`, want: want{rules: `[]`, warn: []string{"operation.hosts"}}},
		{name: "ALLOW notHosts", spec: `{"rules": [{"to": [{"operation": {"notHosts": ["h"]}}]}]}`, want: want{rules: `[]`, warn: []string{"operation.notHosts"}}},
		{name: "ALLOW notMethods", spec: `{"rules": [{"to": [{"operation": {"notMethods": ["GET"]}}]}]}`, want: want{rules: `[]`}},
		{name: "ALLOW paths", spec: `{"rules": [{"to": [{"operation": {"paths": ["/a"]}}]}]}`, want: want{rules: `[]`, warn: []string{"operation.paths"}}},
		{name: "ALLOW notPaths", spec: `{"rules": [{"to": [{"operation": {"notPaths": ["/a"]}}]}]}`, want: want{rules: `[]`}},
		{name: "ALLOW remoteIpBlocks", spec: `{"rules": [{"from": [{"source": {"remoteIpBlocks": ["1.2.3.4"]}}]}]}`, want: want{rules: `[]`, warn: []string{"source.remoteIpBlocks"}}},
		{name: "ALLOW notRemoteIpBlocks", spec: `{"rules": [{"from": [{"source": {"notRemoteIpBlocks": ["1.2.3.4"]}}]}]}`, want: want{rules: `[]`}},
		{name: "ALLOW notRequestPrincipals", spec: `{"rules": [{"from": [{"source": {"notRequestPrincipals": ["x"]}}]}]}`, want: want{rules: `[]`}},

		// --- trust domains: not read by istiod's ztunnel conversion (a.go:609-618)
		{name: "trustDomains ignored", spec: `{"rules": [{"from": [{"source": {"namespaces": ["a"], "trustDomains": ["td"]}}]}]}`,
			want: want{rules: `[[[{"namespaces":[{"Exact":"a"}]}]]]`, warn: []string{"source.trustDomains: ignored by istiod"}}},
		{name: "only notTrustDomains: empty match", spec: `{"rules": [{"from": [{"source": {"notTrustDomains": ["td"]}}]}]}`,
			want: want{rules: `[[[{}]]]`, warn: []string{"source.notTrustDomains", "spec.rules[0]: a clause has only empty matches"}}},

		// --- matches with nothing L4 in them (Istio's validation refuses these; istiod
		// still converts them, to empty matches)
		{name: "empty source", spec: `{"rules": [{"from": [{"source": {}}]}]}`,
			want: want{rules: `[[[{}]]]`, warn: []string{"spec.rules[0].from[0].source: no L4 attribute set"}}},
		{name: "empty operation", spec: `{"rules": [{"to": [{"operation": {}}, {"operation": {"ports": ["1"]}}]}]}`,
			want: want{rules: `[[[{},{"destinationPorts":[1]}]]]`, warn: []string{"spec.rules[0].to[0].operation: no L4 attribute set"}}},
		{name: "condition without values", spec: `{"rules": [{"when": [{"key": "source.ip"}]}]}`,
			want: want{rules: `[[[{}]]]`, warn: []string{"spec.rules[0].when[0]: no L4 attribute set"}}},

		// --- unknown fields are dropped by jsonpb (AllowUnknownFields)
		{name: "unknown fields", spec: `{"foo": 1, "rules": [{"from": [{"source": {"ip_blocks": ["1.1.1.1"], "namespaces": ["a"]}}]}]}`,
			want: want{rules: `[[[{"namespaces":[{"Exact":"a"}]}]]]`, warn: []string{"spec.foo: unknown field", "source.ip_blocks: unknown field"}}},

		// --- bad input: an error naming the field, where istiod drops the value
		{name: "port of the wrong type", spec: `{"rules": [{"to": [{"operation": {"ports": [true]}}]}]}`, want: want{err: "spec.rules[0].to[0].operation.ports[0]: expected a string, got a bool"}},
		{name: "named port", spec: `{"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}`, want: want{err: `spec.rules[0].to[0].operation.ports[0]: "http" is not a port`}},
		{name: "port too large", spec: `{"rules": [{"to": [{"operation": {"notPorts": ["65536"]}}]}]}`, want: want{err: "operation.notPorts[0]"}},
		{name: "negative port", spec: `{"rules": [{"to": [{"operation": {"ports": ["-1"]}}]}]}`, want: want{err: "operation.ports[0]"}},
		{name: "numeric port", spec: `{"rules": [{"to": [{"operation": {"ports": [80]}}]}]}`, want: want{err: "expected a string, got a number"}},
		{name: "bad CIDR", spec: `{"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}`, want: want{err: "source.ipBlocks[0]"}},
		{name: "empty IP", spec: `{"rules": [{"from": [{"source": {"notIpBlocks": [""]}}]}]}`, want: want{err: "source.notIpBlocks[0]"}},
		{name: "bad condition IP", spec: `{"rules": [{"when": [{"key": "destination.ip", "notValues": ["x"]}]}]}`, want: want{err: "spec.rules[0].when[0].notValues[0]"}},
		{name: "bad condition port", spec: `{"rules": [{"when": [{"key": "destination.port", "values": ["80", "x"]}]}]}`, want: want{err: "spec.rules[0].when[0].values[1]"}},
		{name: "L7 values of the wrong type", spec: `{"rules": [{"when": [{"key": "request.headers[a]", "values": [1]}]}]}`, want: want{err: "when[0].values[0]"}},
		{name: "string instead of list", spec: `{"rules": [{"from": [{"source": {"principals": "a"}}]}]}`, want: want{err: "source.principals: expected a list, got a string"}},
		{name: "L7 field of the wrong type", spec: `{"rules": [{"to": [{"operation": {"methods": {}}}]}]}`, want: want{err: "operation.methods"}},
		{name: "rules not a list", spec: `{"rules": {}}`, want: want{err: "spec.rules: expected a list"}},
		{name: "null rule", spec: `{"rules": [null]}`, want: want{err: "spec.rules[0]: expected an object, got null"}},
		{name: "missing source", spec: `{"rules": [{"from": [{}]}]}`, want: want{err: "spec.rules[0].from[0].source: required"}},
		{name: "null operation", spec: `{"rules": [{"to": [{"operation": null}]}]}`, want: want{err: "spec.rules[0].to[0].operation: required"}},
		{name: "condition key not a string", spec: `{"rules": [{"when": [{"key": 5}]}]}`, want: want{err: "when[0].key"}},
		{name: "label of the wrong type", spec: `{"selector": {"matchLabels": {"a": 1}}}`, want: want{err: "spec.selector.matchLabels.a"}},
		{name: "spec not an object", spec: `"x"`, want: want{err: "spec: expected an object"}},
		{name: "targetRefs not a list", spec: `{"targetRefs": {}}`, want: want{err: "spec.targetRefs"}},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, policy(t, tc.ns, tc.spec, tc.ann), tc.want) })
	}
}

func TestConvertMetadata(t *testing.T) {
	obj := func(f func(map[string]any)) *unstructured.Unstructured {
		u := policy(t, "", `{}`, nil)
		f(u.Object)
		return u
	}
	meta := func(o map[string]any) map[string]any { return o["metadata"].(map[string]any) }
	for name, tc := range map[string]struct {
		obj *unstructured.Unstructured
		err string
	}{
		"nil object":        {&unstructured.Unstructured{}, "no object"},
		"no metadata":       {obj(func(o map[string]any) { delete(o, "metadata") }), "metadata.name: required"},
		"metadata a string": {obj(func(o map[string]any) { o["metadata"] = "x" }), "metadata: expected an object"},
		"no name":           {obj(func(o map[string]any) { delete(meta(o), "name") }), "metadata.name: required"},
		"no namespace":      {obj(func(o map[string]any) { delete(meta(o), "namespace") }), "AuthorizationPolicy /p: metadata.namespace: required"},
		"annotations list":  {obj(func(o map[string]any) { meta(o)["annotations"] = []any{} }), "metadata.annotations"},
		"other kind":        {obj(func(o map[string]any) { o["kind"] = "PeerAuthentication" }), "kind"},
		"other group":       {obj(func(o map[string]any) { o["apiVersion"] = "v1" }), "apiVersion"},
	} {
		t.Run(name, func(t *testing.T) { check(t, tc.obj, want{err: tc.err}) })
	}
	if _, _, err := Convert(nil, root); err == nil {
		t.Error("Convert(nil) succeeded")
	}
	// The informer's decoder gives int64 numbers; encoding/json float64.
	u := policy(t, "", `{}`, nil)
	u.Object["spec"] = map[string]any{"action": int64(1)}
	check(t, u, want{action: "Deny"})
	// The name and namespace are the object's.
	pol, _, err := Convert(policy(t, "ns1", `{}`, nil), root)
	if err != nil || pol.Name != "p" || pol.Namespace != "ns1" {
		t.Errorf("got %+v, %v", pol, err)
	}
}

// conn is an inbound connection as the node sees it; principal is the peer's
// SPIFFE id without "spiffe://" ("" for plaintext).
type conn struct {
	principal, src, dst string
	port                int32
}

// policyMatches evaluates a policy as DESIGN.md §4 "L4 authorization semantics"
// says the node does, to check the converted policies mean what istiod's do.
func policyMatches(p meshstate.Policy, c conn) bool {
	ns, sa := "", ""
	if parts := strings.Split(c.principal, "/"); len(parts) == 5 && parts[1] == "ns" && parts[3] == "sa" {
		ns, sa = parts[2], parts[4]
	}
	// a peer without identity hits no positive string match
	str := func(ms []meshstate.StringMatch, v string) bool {
		for _, m := range ms {
			if v != "" && (hasKey(m, "Presence") ||
				hasKey(m, "Exact") && v == m["Exact"] ||
				hasKey(m, "Prefix") && strings.HasPrefix(v, m["Prefix"]) ||
				hasKey(m, "Suffix") && strings.HasSuffix(v, m["Suffix"])) {
				return true
			}
		}
		return false
	}
	ip := func(cs []string, v string) bool {
		for _, s := range cs {
			if netip.MustParsePrefix(s).Contains(netip.MustParseAddr(v)) {
				return true
			}
		}
		return false
	}
	port := func(ps []int32, v int32) bool {
		for _, p := range ps {
			if p == v {
				return true
			}
		}
		return false
	}
	acct := func(as []meshstate.ServiceAccount) bool {
		for _, a := range as {
			if ns != "" && a.Namespace == ns && a.ServiceAccount == sa {
				return true
			}
		}
		return false
	}
	// each non-empty list must pass: positive needs a hit, not-list no hit
	pass := func(n int, hit bool, not bool) bool { return n == 0 || hit != not }
	hits := func(m meshstate.Match) bool {
		return !matchEmpty(m) &&
			pass(len(m.Namespaces), str(m.Namespaces, ns), false) && pass(len(m.NotNamespaces), str(m.NotNamespaces, ns), true) &&
			pass(len(m.Principals), str(m.Principals, c.principal), false) && pass(len(m.NotPrincipals), str(m.NotPrincipals, c.principal), true) &&
			pass(len(m.ServiceAccounts), acct(m.ServiceAccounts), false) && pass(len(m.NotServiceAccounts), acct(m.NotServiceAccounts), true) &&
			pass(len(m.SourceIPs), ip(m.SourceIPs, c.src), false) && pass(len(m.NotSourceIPs), ip(m.NotSourceIPs, c.src), true) &&
			pass(len(m.DestinationIPs), ip(m.DestinationIPs, c.dst), false) && pass(len(m.NotDestinationIPs), ip(m.NotDestinationIPs, c.dst), true) &&
			pass(len(m.DestinationPorts), port(m.DestinationPorts, c.port), false) && pass(len(m.NotDestinationPorts), port(m.NotDestinationPorts, c.port), true)
	}
	for _, rule := range p.Rules {
		ruleOK := true
		for _, clause := range rule {
			clauseOK := len(clause) == 0
			for _, m := range clause {
				clauseOK = clauseOK || hits(m)
			}
			ruleOK = ruleOK && clauseOK
		}
		if ruleOK {
			return true
		}
	}
	return false
}

func hasKey(m meshstate.StringMatch, k string) bool { _, ok := m[k]; return ok }

// TestSemantics checks what the converted policies do, not only how they look.
func TestSemantics(t *testing.T) {
	from := func(p string) conn { return conn{principal: p, src: "10.0.0.5", dst: "10.0.1.1", port: 80} }
	plain := conn{src: "10.0.0.5", dst: "10.0.1.1", port: 80}
	a, b := from("cluster.local/ns/a/sa/x"), from("cluster.local/ns/b/sa/y")
	for _, tc := range []struct {
		name, spec string
		match      []conn
		noMatch    []conn
	}{
		{"spec {} matches nothing", `{}`, nil, []conn{a, plain}},
		{"rules [{}] matches everything", `{"rules": [{}]}`, []conn{a, b, plain}, nil},
		{"ALLOW with L7 never matches (fail closed)", `{"rules": [{"from": [{"source": {"namespaces": ["a"]}}], "to": [{"operation": {"paths": ["/x"]}}]}]}`, nil, []conn{a, b}},
		{"DENY with L7 is wider (more restrictive)", `{"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["a"], "requestPrincipals": ["*"]}}]}]}`, []conn{a}, []conn{b}},
		{"DENY with only L7 is a no-op", `{"action": "DENY", "rules": [{"when": [{"key": "request.headers[x]", "values": ["1"]}]}]}`, nil, []conn{a, b, plain}},
		{"from entries OR-ed", `{"rules": [{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"namespaces": ["b"]}}]}]}`, []conn{a, b}, []conn{plain}},
		{"clauses AND-ed", `{"rules": [{"from": [{"source": {"namespaces": ["a", "b"]}}], "to": [{"operation": {"notPorts": ["80"]}}]}]}`, nil, []conn{a, b}},
		{"notPrincipals * catches plaintext", `{"rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]}`, []conn{plain}, []conn{a}},
		{"bare IP is /32", `{"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.5"]}}]}]}`, []conn{a}, []conn{{src: "10.0.0.6", port: 80}}},
		{"serviceAccounts default to the policy namespace", `{"rules": [{"from": [{"source": {"serviceAccounts": ["x", "b/y"]}}]}]}`,
			[]conn{b, from("cluster.local/ns/app/sa/x")}, []conn{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, _, err := Convert(policy(t, "", tc.spec, nil), root)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.match {
				if !policyMatches(pol, c) {
					t.Errorf("%+v should match %s", c, mustJSON(pol.Rules))
				}
			}
			for _, c := range tc.noMatch {
				if policyMatches(pol, c) {
					t.Errorf("%+v should not match %s", c, mustJSON(pol.Rules))
				}
			}
		})
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
