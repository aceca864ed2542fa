package agent

import (
	"errors"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"ztunnel.dev/kube/internal/authz"
	"ztunnel.dev/kube/internal/meshstate"
)

// policyStore keeps every AuthorizationPolicy converted once per change; a policy
// that cannot be used at all is left out, with one log line and an Event.
type policyStore struct {
	a        *Agent
	mu       sync.Mutex
	policies map[string]meshstate.Policy
	reported map[string]string // key -> resourceVersion reported
}

func newPolicyStore(a *Agent) *policyStore {
	return &policyStore{a: a, policies: map[string]meshstate.Policy{}, reported: map[string]string{}}
}

func (s *policyStore) Upsert(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := u.GetNamespace() + "/" + u.GetName()
	p, warnings, err := authz.Convert(u, s.a.cfg.RootNamespace)
	s.mu.Lock()
	first := s.reported[key] != u.GetResourceVersion()
	s.reported[key] = u.GetResourceVersion()
	switch {
	case err == nil:
		s.policies[key] = p
	case errors.Is(err, authz.ErrNotForZtunnel):
		delete(s.policies, key) // a waypoint's or an unsupported action: istiod skips it too
	default:
		// Unusable as written. Skipping it could fail open (a DENY that denies
		// nothing, or the only ALLOW of a scope gone, which allows everything), so
		// it stands as "deny everything it could have selected" until fixed.
		s.policies[key] = standIn(u, s.a.cfg.RootNamespace)
	}
	s.mu.Unlock()
	if first {
		switch {
		case err != nil && errors.Is(err, authz.ErrNotForZtunnel):
			klog.InfoS("AuthorizationPolicy not for ztunnel", "policy", key, "reason", err)
		case err != nil:
			klog.ErrorS(err, "AuthorizationPolicy rejected: it denies all traffic it could select until fixed", "policy", key)
			s.a.event("AuthorizationPolicy", u.GetNamespace(), u.GetName(), "ZtunnelPolicyRejected",
				err.Error()+"; until it is fixed it denies all traffic to the workloads it could select")
		}
		if len(warnings) > 0 {
			msg := strings.Join(warnings, "; ")
			klog.InfoS("AuthorizationPolicy applied in part", "policy", key, "warnings", msg)
			s.a.event("AuthorizationPolicy", u.GetNamespace(), u.GetName(), "ZtunnelPolicyPartial", msg)
		}
	}
	s.a.writer.MarkDirty()
}

func (s *policyStore) Delete(obj any) {
	var key string
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		key = o.GetNamespace() + "/" + o.GetName()
	case cache.DeletedFinalStateUnknown:
		key = o.Key
	}
	s.mu.Lock()
	delete(s.policies, key)
	delete(s.reported, key)
	s.mu.Unlock()
	s.a.writer.MarkDirty()
}

// List returns the usable policies in a stable order.
func (s *policyStore) List() []meshstate.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]meshstate.Policy, 0, len(s.policies))
	for _, p := range s.policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

// standIn is the fail-closed replacement of a policy that cannot be used: a DENY of
// everything, over its selector when that much of it is readable, else its
// namespace (or the mesh, in the root namespace).
func standIn(u *unstructured.Unstructured, root string) meshstate.Policy {
	p := meshstate.Policy{Name: u.GetName(), Namespace: u.GetNamespace(), Scope: "Namespace",
		Action: "Deny", Rules: [][][]meshstate.Match{{}}}
	if u.GetNamespace() == root {
		p.Scope = "Global"
	}
	if sel, found, err := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels"); err == nil && found {
		p.Scope, p.Selector = "WorkloadSelector", sel
	}
	return p
}
