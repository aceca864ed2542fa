// Package authz converts an Istio AuthorizationPolicy (security.istio.io, as a
// dynamic informer delivers it) into ztunnel's L4 policy form, meshstate.Policy,
// with the semantics istiod applies when it sends the policy to ztunnel over the
// workload API: convertAuthorizationPolicy and handleRule in istio/istio
// pilot/pkg/serviceregistry/ambient/authorization.go. Comments cite that file as
// "authorization.go:LINE" (istio/istio 86c9f01f, Aug 2026).
//
// Where this package differs from istiod, it is stricter: a value istiod would
// silently drop (a bad port or CIDR, a field of the wrong type) refuses the policy.
package authz

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"ztunnel.dev/kube/internal/meshstate"
)

// DryRunAnnotation marks a policy that is only logged, never enforced.
const DryRunAnnotation = "istio.io/dry-run"

// ErrNotForZtunnel is matched (errors.Is) by Convert's error for a valid policy
// that istiod does not send to ztunnel at all: targetRef(s) (waypoint/gateway
// policies) and the AUDIT and CUSTOM actions. Skip those; do not treat as broken.
var ErrNotForZtunnel = errors.New("not for ztunnel")

type converter struct {
	namespace string // the policy's: serviceAccounts without one are in it
	allow     bool
	warnings  []string
}

func (c *converter) warnf(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// Convert returns the policy, warnings (one line each, naming the field), and an
// error when the policy cannot be used at all; the error names the policy
// (ns/name) and the field. Selector is nil for a WorkloadSelector policy whose
// selector has no matchLabels: istiod attaches such a policy to no workload.
func Convert(obj *unstructured.Unstructured, rootNamespace string) (meshstate.Policy, []string, error) {
	if obj == nil || obj.Object == nil {
		return meshstate.Policy{}, nil, errors.New("AuthorizationPolicy <nil>: no object")
	}
	c := &converter{}
	pol, err := c.convert(obj.Object, rootNamespace)
	if err != nil {
		// pol holds the name as far as it was read, for the message.
		return meshstate.Policy{}, c.warnings, fmt.Errorf("AuthorizationPolicy %s/%s: %w", pol.Namespace, pol.Name, err)
	}
	return pol, c.warnings, nil
}

func (c *converter) convert(obj map[string]any, rootNamespace string) (meshstate.Policy, error) {
	var pol meshstate.Policy
	if err := checkKind(obj); err != nil {
		return pol, err
	}
	meta, err := asObject(obj["metadata"], "metadata")
	if err != nil {
		return pol, err
	}
	for _, f := range []struct {
		key string
		out *string
	}{{"name", &pol.Name}, {"namespace", &pol.Namespace}} {
		if *f.out, err = asString(meta[f.key], "metadata."+f.key); err != nil {
			return pol, err
		}
		if *f.out == "" {
			return pol, errorf("metadata."+f.key, "required")
		}
	}
	c.namespace = pol.Namespace
	if pol.DryRun, err = c.dryRun(meta); err != nil {
		return pol, err
	}

	spec, err := asObject(obj["spec"], "spec")
	if err != nil {
		return pol, err
	}
	c.unknownFields(spec, "spec", "selector", "targetRef", "targetRefs", "rules", "action", "provider")

	// authorization.go:420-424: a targetRef policy binds to a waypoint or gateway
	// and is not sent to ztunnel, whatever else it says (so checked first).
	if tr, err := asObject(spec["targetRef"], "spec.targetRef"); err != nil {
		return pol, err
	} else if tr != nil {
		return pol, &fieldError{path: "spec.targetRef", msg: "binds to a waypoint or gateway, not to ztunnel", skip: true}
	}
	if trs, err := asList(spec["targetRefs"], "spec.targetRefs"); err != nil {
		return pol, err
	} else if len(trs) > 0 {
		return pol, &fieldError{path: "spec.targetRefs", msg: "binds to a waypoint or gateway, not to ztunnel", skip: true}
	}

	if pol.Scope, pol.Selector, err = c.scope(spec, pol.Namespace, rootNamespace); err != nil {
		return pol, err
	}
	if pol.Action, err = action(spec["action"]); err != nil {
		return pol, err
	}
	c.allow = pol.Action == "Allow"

	pol.Rules, err = c.rules(spec["rules"])
	return pol, err
}

// checkKind refuses an object that is not an AuthorizationPolicy (when it says).
func checkKind(obj map[string]any) error {
	kind, err := asString(obj["kind"], "kind")
	if err != nil {
		return err
	}
	if kind != "" && kind != "AuthorizationPolicy" {
		return errorf("kind", "%q is not AuthorizationPolicy", kind)
	}
	apiVersion, err := asString(obj["apiVersion"], "apiVersion")
	if err != nil {
		return err
	}
	if apiVersion != "" && !strings.HasPrefix(apiVersion, "security.istio.io/") {
		return errorf("apiVersion", "%q is not security.istio.io", apiVersion)
	}
	return nil
}

// dryRun mirrors authorization.go:401-408: an empty value is not parsed; a value
// strconv.ParseBool refuses is logged and the policy is ENFORCED (dryRun false).
// istiod then drops dry-run policies unless AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY
// (default off, authorization.go:410-418); we always pass them on marked dryRun,
// as with that flag on: the node only logs them, so neither way enforces them.
func (c *converter) dryRun(meta map[string]any) (bool, error) {
	path := "metadata.annotations[" + DryRunAnnotation + "]"
	ann, err := asObject(meta["annotations"], "metadata.annotations")
	if err != nil {
		return false, err
	}
	val, err := asString(ann[DryRunAnnotation], path)
	if err != nil || val == "" {
		return false, err
	}
	dry, perr := strconv.ParseBool(val)
	if perr != nil {
		c.warnf("%s: %q is not a bool; the policy is enforced (as istiod does)", path, val)
	}
	return dry, nil
}

// scope mirrors authorization.go:426-433: any selector object (even {}) makes a
// WorkloadSelector policy; without one, Global in the root namespace, else
// Namespace. istiod attaches a selector policy only when its matchLabels map is
// non-nil (workloads.go buildWorkloadPolicies: GetLabelSelector() != nil), and
// then when the labels are a subset of the workload's (an empty map selects all).
func (c *converter) scope(spec map[string]any, ns, root string) (string, map[string]string, error) {
	sel, err := asObject(spec["selector"], "spec.selector")
	if err != nil {
		return "", nil, err
	}
	if sel == nil {
		if ns == root {
			return "Global", nil, nil
		}
		return "Namespace", nil, nil
	}
	c.unknownFields(sel, "spec.selector", "matchLabels")
	ml, err := asObject(sel["matchLabels"], "spec.selector.matchLabels")
	if err != nil {
		return "", nil, err
	}
	if ml == nil {
		c.warnf("spec.selector: has no matchLabels; istiod attaches this policy to no workload")
		return "WorkloadSelector", nil, nil
	}
	labels := make(map[string]string, len(ml))
	for k, v := range ml {
		if labels[k], err = asString(v, "spec.selector.matchLabels."+k); err != nil {
			return "", nil, err
		}
	}
	return "WorkloadSelector", labels, nil
}

// action mirrors authorization.go:434-444: ALLOW (also the default) and DENY;
// AUDIT and CUSTOM are not sent to ztunnel. jsonpb also takes the enum's number.
func action(v any) (string, error) {
	name := ""
	switch t := v.(type) {
	case nil:
		name = "ALLOW"
	case string:
		name = t
	case int64, float64, int:
		name = map[string]string{"0": "ALLOW", "1": "DENY", "2": "AUDIT", "3": "CUSTOM"}[fmt.Sprint(t)]
		if name == "" {
			return "", errorf("spec.action", "%v is not an action number (0-3)", t)
		}
	default:
		return "", errorf("spec.action", "expected a string, got %s", describe(v))
	}
	switch name {
	case "ALLOW":
		return "Allow", nil
	case "DENY":
		return "Deny", nil
	case "AUDIT", "CUSTOM":
		return "", &fieldError{path: "spec.action", msg: "ztunnel does not support the " + name + " action", skip: true}
	}
	return "", errorf("spec.action", "%q is not one of ALLOW, DENY, AUDIT, CUSTOM", name)
}
