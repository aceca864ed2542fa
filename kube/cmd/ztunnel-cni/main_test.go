package main

import (
	"flag"
	"testing"
)

func TestOptionalStringTakesAnEmptyVariableAsAChoice(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  *string
		want string
	}{
		{"unset: the default", nil, "/var/run/ztunnel/mesh.json"},
		{"empty: off", ptr(""), ""},
		{"set", ptr("/tmp/m.json"), "/tmp/m.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv("ZTUNNEL_TEST_MESH_CONFIG", *tc.env)
			}
			e := &envFlags{fs: flag.NewFlagSet("test", flag.ContinueOnError)}
			got := e.OptionalString("mesh-config", "ZTUNNEL_TEST_MESH_CONFIG", "/var/run/ztunnel/mesh.json", "")
			if err := e.fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			if *got != tc.want {
				t.Fatalf("got %q, want %q", *got, tc.want)
			}
		})
	}
	// A flag still wins over the variable.
	t.Setenv("ZTUNNEL_TEST_MESH_CONFIG", "")
	e := &envFlags{fs: flag.NewFlagSet("test", flag.ContinueOnError)}
	got := e.OptionalString("mesh-config", "ZTUNNEL_TEST_MESH_CONFIG", "/d", "")
	if err := e.fs.Parse([]string{"--mesh-config", "/f"}); err != nil || *got != "/f" {
		t.Fatalf("flag: got %q (%v)", *got, err)
	}
}

func ptr(s string) *string { return &s }
