package authz

import (
	"fmt"

	"ztunnel.dev/kube/internal/meshstate"
)

// Fields ztunnel cannot evaluate (authorization.go:503-543, httpOperations and
// httpSources). Their presence makes an ALLOW rule never match; in a DENY rule
// they are left out of the match.
var (
	l7Operation = []string{"hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"}
	l7Source    = []string{"remoteIpBlocks", "notRemoteIpBlocks", "requestPrincipals", "notRequestPrincipals"}
)

// rules converts spec.rules; each rule becomes one rule of clauses (istiod's Group
// of Rules), dropped ALLOW rules leave no trace. The result is never nil so that an
// empty list is written as [] (no rule: matches nothing), not null.
func (c *converter) rules(v any) ([][][]meshstate.Match, error) {
	items, err := asList(v, "spec.rules")
	if err != nil {
		return nil, err
	}
	out := [][][]meshstate.Match{}
	foundL7, effective := false, false
	for i, item := range items {
		path := fmt.Sprintf("spec.rules[%d]", i)
		clauses, l7, err := c.rule(item, path)
		if err != nil {
			return nil, err
		}
		foundL7 = foundL7 || l7
		// authorization.go:650-654: an ALLOW rule with any L7 attribute is dropped,
		// so it never matches (fail closed); a DENY rule keeps its L4 part.
		if c.allow && l7 {
			c.warnf("%s: ALLOW rule uses L7 attributes; dropped, it never matches", path)
			continue
		}
		out = append(out, clauses)
		// ztunnel skips an empty match, so a clause made only of empty matches
		// fails, and with it the rule (hasEffectiveRules, authorization.go:551-582).
		if !ruleCanMatch(clauses) {
			c.warnf("%s: a clause has only empty matches (no L4 attribute), so the rule never matches", path)
		} else {
			effective = true
			if l7 {
				c.warnf("%s: DENY rule enforced without its L7 attributes: more restrictive than requested", path)
			}
		}
	}
	// authorization.go:466-486: the status istiod writes for such a DENY policy.
	if !c.allow && foundL7 && !effective {
		c.warnf("spec.rules: after omitting L7 attributes this DENY policy has no enforceable rule at ztunnel and no effect; use a waypoint")
	}
	return out, nil
}

// rule mirrors handleRule (authorization.go:584-657): one clause OR-ing a match
// per `to` entry, then one OR-ing a match per `from` entry, then one clause per
// `when` condition; the clauses are AND-ed. An empty rule has no clause and so
// matches everything. l7 reports whether any L7 attribute was set.
func (c *converter) rule(v any, path string) (clauses [][]meshstate.Match, l7 bool, err error) {
	rule, err := asEntry(v, path)
	if err != nil {
		return nil, false, err
	}
	c.unknownFields(rule, path, "from", "to", "when")
	clauses = [][]meshstate.Match{}

	tos, err := asList(rule["to"], path+".to")
	if err != nil {
		return nil, false, err
	}
	var toMatches []meshstate.Match
	for j, to := range tos {
		m, found, err := c.operation(to, fmt.Sprintf("%s.to[%d]", path, j))
		if err != nil {
			return nil, false, err
		}
		l7 = l7 || found
		toMatches = append(toMatches, m)
	}
	if len(toMatches) > 0 {
		clauses = append(clauses, toMatches)
	}

	froms, err := asList(rule["from"], path+".from")
	if err != nil {
		return nil, false, err
	}
	var fromMatches []meshstate.Match
	for j, from := range froms {
		m, found, err := c.source(from, fmt.Sprintf("%s.from[%d]", path, j))
		if err != nil {
			return nil, false, err
		}
		l7 = l7 || found
		fromMatches = append(fromMatches, m)
	}
	if len(fromMatches) > 0 {
		clauses = append(clauses, fromMatches)
	}

	whens, err := asList(rule["when"], path+".when")
	if err != nil {
		return nil, false, err
	}
	for k, when := range whens {
		m, found, err := c.condition(when, fmt.Sprintf("%s.when[%d]", path, k))
		if err != nil {
			return nil, false, err
		}
		l7 = l7 || found
		clauses = append(clauses, []meshstate.Match{m})
	}
	return clauses, l7, nil
}

// l7Fields type-checks the L7 list fields of obj and warns about each one set.
func (c *converter) l7Fields(obj map[string]any, path string, keys []string) (bool, error) {
	found := false
	for _, k := range keys {
		vals, err := asStrings(obj[k], path+"."+k)
		if err != nil {
			return false, err
		}
		if len(vals) > 0 {
			found = true
			c.l7(path + "." + k)
		}
	}
	return found, nil
}

func (c *converter) l7(field string) {
	if c.allow {
		c.warnf("%s: L7 attribute; ztunnel cannot match it, the rule never matches", field)
	} else {
		c.warnf("%s: L7 attribute; ztunnel cannot match it, left out of the DENY rule", field)
	}
}

// operation converts one `to` entry (authorization.go:588-600): only the ports.
func (c *converter) operation(v any, path string) (m meshstate.Match, l7 bool, err error) {
	to, err := asEntry(v, path)
	if err != nil {
		return m, false, err
	}
	c.unknownFields(to, path, "operation")
	path += ".operation"
	// istiod would dereference a nil operation (and crash); Istio's validation
	// requires it.
	op, err := asObject(to["operation"], path)
	if err != nil {
		return m, false, err
	}
	if op == nil {
		return m, false, errorf(path, "required")
	}
	c.unknownFields(op, path, append([]string{"ports", "notPorts"}, l7Operation...)...)
	if l7, err = c.l7Fields(op, path, l7Operation); err != nil {
		return m, false, err
	}
	if m.DestinationPorts, err = ports(op["ports"], path+".ports"); err != nil {
		return m, false, err
	}
	if m.NotDestinationPorts, err = ports(op["notPorts"], path+".notPorts"); err != nil {
		return m, false, err
	}
	c.checkEmpty(m, l7, path)
	return m, l7, nil
}

// source converts one `from` entry (authorization.go:602-619).
func (c *converter) source(v any, path string) (m meshstate.Match, l7 bool, err error) {
	from, err := asEntry(v, path)
	if err != nil {
		return m, false, err
	}
	c.unknownFields(from, path, "source")
	path += ".source"
	src, err := asObject(from["source"], path)
	if err != nil {
		return m, false, err
	}
	if src == nil { // as for operation: istiod would crash, validation refuses
		return m, false, errorf(path, "required")
	}
	c.unknownFields(src, path, append([]string{"principals", "notPrincipals", "namespaces", "notNamespaces",
		"serviceAccounts", "notServiceAccounts", "ipBlocks", "notIpBlocks", "trustDomains", "notTrustDomains"},
		l7Source...)...)
	if l7, err = c.l7Fields(src, path, l7Source); err != nil {
		return m, false, err
	}
	// istiod's ztunnel conversion reads neither trust-domain field (sidecars do):
	// the match is made as if they were absent, which in an ALLOW rule WIDENS it.
	for _, k := range []string{"trustDomains", "notTrustDomains"} {
		vals, err := asStrings(src[k], path+"."+k)
		if err != nil {
			return m, false, err
		}
		if len(vals) > 0 && c.allow {
			c.warnf("%s.%s: ignored by istiod for ztunnel; matched as if absent, so this ALLOW rule admits every trust domain", path, k)
		} else if len(vals) > 0 {
			c.warnf("%s.%s: ignored by istiod for ztunnel; matched as if absent, so this DENY rule applies to every trust domain", path, k)
		}
	}
	for _, f := range []struct {
		key string
		out *[]meshstate.StringMatch
	}{{"principals", &m.Principals}, {"notPrincipals", &m.NotPrincipals},
		{"namespaces", &m.Namespaces}, {"notNamespaces", &m.NotNamespaces}} {
		if *f.out, err = stringMatches(src[f.key], path+"."+f.key); err != nil {
			return m, false, err
		}
	}
	if m.ServiceAccounts, err = serviceAccounts(src["serviceAccounts"], path+".serviceAccounts", c.namespace); err != nil {
		return m, false, err
	}
	if m.NotServiceAccounts, err = serviceAccounts(src["notServiceAccounts"], path+".notServiceAccounts", c.namespace); err != nil {
		return m, false, err
	}
	if m.SourceIPs, err = cidrs(src["ipBlocks"], path+".ipBlocks"); err != nil {
		return m, false, err
	}
	if m.NotSourceIPs, err = cidrs(src["notIpBlocks"], path+".notIpBlocks"); err != nil {
		return m, false, err
	}
	c.checkEmpty(m, l7, path)
	return m, l7, nil
}

// condition converts one `when` entry into a one-match clause (authorization.go:
// 629-649, whenMatch): values fill the key's positive list, notValues its not-list.
// The five keys of the switch are l4WhenAttributes (authorization.go:659-665); any
// other key, source.serviceAccount and source.trustDomain included, counts as L7
// and yields an empty match, so its clause never matches.
func (c *converter) condition(v any, path string) (m meshstate.Match, l7 bool, err error) {
	when, err := asEntry(v, path)
	if err != nil {
		return m, false, err
	}
	c.unknownFields(when, path, "key", "values", "notValues")
	key, err := asString(when["key"], path+".key")
	if err != nil {
		return m, false, err
	}
	vals, notVals := when["values"], when["notValues"]
	vp, np := path+".values", path+".notValues"
	switch key {
	case "source.ip":
		if m.SourceIPs, err = cidrs(vals, vp); err == nil {
			m.NotSourceIPs, err = cidrs(notVals, np)
		}
	case "source.namespace":
		if m.Namespaces, err = stringMatches(vals, vp); err == nil {
			m.NotNamespaces, err = stringMatches(notVals, np)
		}
	case "source.principal":
		if m.Principals, err = stringMatches(vals, vp); err == nil {
			m.NotPrincipals, err = stringMatches(notVals, np)
		}
	case "destination.ip":
		if m.DestinationIPs, err = cidrs(vals, vp); err == nil {
			m.NotDestinationIPs, err = cidrs(notVals, np)
		}
	case "destination.port":
		if m.DestinationPorts, err = ports(vals, vp); err == nil {
			m.NotDestinationPorts, err = ports(notVals, np)
		}
	default:
		if _, err = asStrings(vals, vp); err == nil {
			_, err = asStrings(notVals, np)
		}
		l7 = true
		c.l7(fmt.Sprintf("%s.key %q", path, key))
	}
	if err != nil {
		return m, false, err
	}
	c.checkEmpty(m, l7, path)
	return m, l7, nil
}

// checkEmpty warns about a match with no L4 list for a reason other than L7
// fields (those already warned): e.g. `source: {}` or a condition without values.
func (c *converter) checkEmpty(m meshstate.Match, l7 bool, path string) {
	if !l7 && matchEmpty(m) {
		c.warnf("%s: no L4 attribute set; this match never hits (ztunnel skips empty matches)", path)
	}
}

func matchEmpty(m meshstate.Match) bool {
	return len(m.Namespaces)+len(m.NotNamespaces)+len(m.Principals)+len(m.NotPrincipals)+
		len(m.ServiceAccounts)+len(m.NotServiceAccounts)+len(m.SourceIPs)+len(m.NotSourceIPs)+
		len(m.DestinationIPs)+len(m.NotDestinationIPs)+len(m.DestinationPorts)+len(m.NotDestinationPorts) == 0
}

// ruleCanMatch is false when some clause has only empty matches.
func ruleCanMatch(clauses [][]meshstate.Match) bool {
	for _, clause := range clauses {
		ok := false
		for _, m := range clause {
			ok = ok || !matchEmpty(m)
		}
		if !ok {
			return false
		}
	}
	return true
}
