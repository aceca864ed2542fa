package authz

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"ztunnel.dev/kube/internal/meshstate"
)

// fieldError names the field a policy could not be converted at. skip marks the
// policies istiod deliberately does not send to ztunnel (errors.Is ErrNotForZtunnel).
type fieldError struct {
	path, msg string
	skip      bool
}

func (e *fieldError) Error() string { return e.path + ": " + e.msg }

func (e *fieldError) Is(target error) bool { return e.skip && target == ErrNotForZtunnel }

func errorf(path, format string, args ...any) error {
	return &fieldError{path: path, msg: fmt.Sprintf(format, args...)}
}

// describe names a decoded JSON value's type for error messages.
func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("a bool (%v)", t)
	case string:
		return fmt.Sprintf("a string (%q)", t)
	case int, int32, int64, float32, float64:
		return fmt.Sprintf("a number (%v)", t)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// The as* accessors read a decoded JSON value of the expected type. A JSON null is
// an absent field (nil result), as jsonpb treats it; anything else of the wrong type
// is an error, since guessing what a malformed field meant could widen a policy.

func asObject(v any, path string) (map[string]any, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return t, nil
	}
	return nil, errorf(path, "expected an object, got %s", describe(v))
}

func asList(v any, path string) ([]any, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return t, nil
	}
	return nil, errorf(path, "expected a list, got %s", describe(v))
}

func asString(v any, path string) (string, error) {
	switch t := v.(type) {
	case nil:
		return "", nil
	case string:
		return t, nil
	}
	return "", errorf(path, "expected a string, got %s", describe(v))
}

// asEntry reads one element of a list of objects; a null element is refused
// (the CRD schema refuses it too) rather than read as an empty, match-all object.
func asEntry(v any, path string) (map[string]any, error) {
	if v == nil {
		return nil, errorf(path, "expected an object, got null")
	}
	return asObject(v, path)
}

func asStrings(v any, path string) ([]string, error) {
	items, err := asList(v, path)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, errorf(fmt.Sprintf("%s[%d]", path, i), "expected a string, got %s", describe(item))
		}
		out = append(out, s)
	}
	return out, nil
}

// unknownFields warns about keys istiod's decoder would drop (jsonpb with
// AllowUnknownFields): a field newer than this code is ignored, not enforced.
func (c *converter) unknownFields(m map[string]any, path string, known ...string) {
	var extra []string
	for k := range m {
		found := false
		for _, want := range known {
			found = found || k == want
		}
		if !found {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		c.warnf("%s.%s: unknown field, ignored (istiod ignores it too)", path, k)
	}
}

// stringMatches mirrors istiod's stringToMatch: "*" is presence, a leading "*" a
// suffix match, a trailing "*" a prefix match, anything else exact. The leading
// test wins, so "*a*" is Suffix "a*"; there are no other wildcards.
func stringMatches(v any, path string) ([]meshstate.StringMatch, error) {
	vals, err := asStrings(v, path)
	if err != nil {
		return nil, err
	}
	var out []meshstate.StringMatch
	for _, s := range vals {
		switch {
		case s == "*":
			out = append(out, meshstate.Presence())
		case strings.HasPrefix(s, "*"):
			out = append(out, meshstate.Suffix(strings.TrimPrefix(s, "*")))
		case strings.HasSuffix(s, "*"):
			out = append(out, meshstate.Prefix(strings.TrimSuffix(s, "*")))
		default:
			out = append(out, meshstate.Exact(s))
		}
	}
	return out, nil
}

// serviceAccounts mirrors istiod's stringToServiceAccountMatch: "ns/sa" splits at
// the first "/", a bare "sa" is in the policy's own namespace.
func serviceAccounts(v any, path, policyNamespace string) ([]meshstate.ServiceAccount, error) {
	vals, err := asStrings(v, path)
	if err != nil {
		return nil, err
	}
	var out []meshstate.ServiceAccount
	for _, s := range vals {
		ns, sa, ok := strings.Cut(s, "/")
		if !ok {
			ns, sa = policyNamespace, s
		}
		out = append(out, meshstate.ServiceAccount{Namespace: ns, ServiceAccount: sa})
	}
	return out, nil
}

// ports parses like istiod's stringToPort (strconv.ParseUint base 10, at most
// 65535, so "0" and "080" pass). istiod silently drops a bad port; we refuse the
// policy: a dropped port empties its match, which silently disables a DENY rule.
func ports(v any, path string) ([]int32, error) {
	vals, err := asStrings(v, path)
	if err != nil {
		return nil, err
	}
	var out []int32
	for i, s := range vals {
		p, err := strconv.ParseUint(s, 10, 32)
		if err != nil || p > 65535 {
			return nil, errorf(fmt.Sprintf("%s[%d]", path, i), "%q is not a port (0-65535)", s)
		}
		out = append(out, int32(p))
	}
	return out, nil
}

// cidrs parses like istiod's stringToIP: with a "/" a prefix, else an address of
// full length (/32, /128). A zone is dropped (istiod sends only the bytes). Host
// bits are cleared: ztunnel matches the network either way, and our config reader
// rejects "10.0.0.1/8" as a likely typo. A bad entry (istiod drops it) is an error,
// for the same reason as in ports.
func cidrs(v any, path string) ([]string, error) {
	vals, err := asStrings(v, path)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, s := range vals {
		var pfx netip.Prefix
		if strings.Contains(s, "/") {
			pfx, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				a = a.WithZone("")
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, errorf(fmt.Sprintf("%s[%d]", path, i), "%q is not an IP address or CIDR", s)
		}
		out = append(out, pfx.Masked().String())
	}
	return out, nil
}
