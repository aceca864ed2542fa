package cni

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestChainIsIdempotentAndUnchainRestores(t *testing.T) {
	dir := t.TempDir()
	orig := `{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge","bridge":"ztk0"}]}`
	if err := os.WriteFile(filepath.Join(dir, "10-net.conflist"), []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	// A later file is not the primary network and stays untouched.
	if err := os.WriteFile(filepath.Join(dir, "99-other.conflist"), []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	path, changed, err := Chain(dir, Entry{AgentSocket: "/run/z/cni.sock"})
	if err != nil || !changed || filepath.Base(path) != "10-net.conflist" {
		t.Fatalf("Chain = %s %v %v", path, changed, err)
	}
	if _, changed, _ := Chain(dir, Entry{AgentSocket: "/run/z/cni.sock"}); changed {
		t.Error("a second Chain changed the file")
	}
	conf := readJSON(t, path)
	plugins := conf["plugins"].([]any)
	if len(plugins) != 2 || plugins[1].(map[string]any)["type"] != PluginType ||
		plugins[0].(map[string]any)["type"] != "bridge" {
		t.Errorf("chained: %v", plugins)
	}
	if got := readJSON(t, filepath.Join(dir, "99-other.conflist"))["plugins"].([]any); len(got) != 1 {
		t.Errorf("a non-primary config was changed: %v", got)
	}
	if err := Unchain(dir); err != nil {
		t.Fatal(err)
	}
	if got := readJSON(t, path)["plugins"].([]any); len(got) != 1 {
		t.Errorf("after Unchain: %v", got)
	}
}

func TestChainUpdatesOurEntryWhenItsSettingsChange(t *testing.T) {
	dir := t.TempDir()
	orig := `{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge"}]}`
	if err := os.WriteFile(filepath.Join(dir, "10-net.conflist"), []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	entry := Entry{AgentSocket: "/s", ExcludeNamespaces: []string{"kube-system", "ztunnel"}}
	path, _, err := Chain(dir, entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, _ := Chain(dir, entry); changed {
		t.Error("the same entry changed the file")
	}
	entry.ExcludeNamespaces = []string{"kube-system"}
	if _, changed, _ := Chain(dir, entry); !changed {
		t.Error("new exclusions did not change the file")
	}
	plugins := readJSON(t, path)["plugins"].([]any)
	ours := plugins[1].(map[string]any)
	if len(plugins) != 2 || len(ours["excludeNamespaces"].([]any)) != 1 {
		t.Errorf("%v", plugins)
	}
}

func TestChainWrapsASingleConf(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "10-net.conf"), []byte(`{"cniVersion":"0.4.0","name":"k8s","type":"bridge"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	path, _, err := Chain(dir, Entry{AgentSocket: "/s"})
	if err != nil || filepath.Base(path) != "10-net.conflist" {
		t.Fatalf("%s %v", path, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "10-net.conf")); !os.IsNotExist(err) {
		t.Error("the .conf was left beside the .conflist")
	}
	plugins := readJSON(t, path)["plugins"].([]any)
	if len(plugins) != 2 || plugins[0].(map[string]any)["type"] != "bridge" {
		t.Errorf("%v", plugins)
	}
}

func TestChainNeedsANetwork(t *testing.T) {
	if _, _, err := Chain(t.TempDir(), Entry{AgentSocket: "/s"}); err == nil {
		t.Error("Chain with no network config succeeded")
	}
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
