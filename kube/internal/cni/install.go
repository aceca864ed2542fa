package cni

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// InstallBinary copies the running binary into the CNI bin dir as PluginType
// (through a temporary file and rename: a runtime may exec it at any moment).
func InstallBinary(binDir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	src, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst := filepath.Join(binDir, PluginType)
	tmp, err := os.CreateTemp(binDir, "."+PluginType+".*")
	if err != nil {
		return "", fmt.Errorf("installing the CNI plugin into %s: %w", binDir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp.Name(), dst)
}

// primaryConfig is the file the runtime uses: the first by name, as libcni picks.
func primaryConfig(confDir string) (string, error) {
	entries, err := os.ReadDir(confDir)
	if err != nil {
		return "", fmt.Errorf("reading the CNI config directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && !strings.HasPrefix(n, ".") &&
			(strings.HasSuffix(n, ".conflist") || strings.HasSuffix(n, ".conf") || strings.HasSuffix(n, ".json")) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no CNI network configuration in %s yet (is the network plugin installed?)", confDir)
	}
	sort.Strings(names)
	return filepath.Join(confDir, names[0]), nil
}

// Entry is our plugin's entry in the chained configuration: where the agent listens,
// and the namespaces whose pods the plugin passes without asking it (so the mesh's own
// pods and the system's can start while the agent is away).
type Entry struct {
	AgentSocket       string
	ExcludeNamespaces []string
}

func (e Entry) conf() map[string]any {
	m := map[string]any{"type": PluginType, "agentSocket": e.AgentSocket}
	if len(e.ExcludeNamespaces) > 0 {
		ns := make([]any, len(e.ExcludeNamespaces))
		for i, n := range e.ExcludeNamespaces {
			ns[i] = n
		}
		m["excludeNamespaces"] = ns
	}
	return m
}

// Chain adds our plugin at the end of the primary network's plugin list (a single
// .conf becomes a .conflist, as istio-cni does). It returns the file and whether it
// changed; running it again changes nothing.
func Chain(confDir string, entry Entry) (string, bool, error) {
	path, err := primaryConfig(confDir)
	if err != nil {
		return "", false, err
	}
	conf, err := readConf(path)
	if err != nil {
		return path, false, err
	}
	plugins, _ := conf["plugins"].([]any)
	if plugins == nil {
		// A single-plugin .conf: wrap it.
		single := map[string]any{}
		for k, v := range conf {
			if k != "cniVersion" && k != "name" {
				single[k] = v
			}
		}
		conf = map[string]any{"cniVersion": conf["cniVersion"], "name": conf["name"], "plugins": []any{single}}
		plugins = conf["plugins"].([]any)
	}
	want := entry.conf()
	for i, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == PluginType {
			if reflect.DeepEqual(m, want) {
				return path, false, nil
			}
			plugins[i] = want
			return path, true, writeConf(path, path, conf)
		}
	}
	conf["plugins"] = append(plugins, want)
	out := path
	if !strings.HasSuffix(path, ".conflist") {
		out = strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
	}
	return out, true, writeConf(path, out, conf)
}

// Unchain removes our plugin from every network configuration in confDir.
func Unchain(confDir string) error {
	entries, err := os.ReadDir(confDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(confDir, e.Name())
		if !strings.HasSuffix(path, ".conflist") {
			continue
		}
		conf, err := readConf(path)
		if err != nil {
			continue
		}
		plugins, _ := conf["plugins"].([]any)
		var kept []any
		for _, p := range plugins {
			if m, ok := p.(map[string]any); ok && m["type"] == PluginType {
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) != len(plugins) {
			conf["plugins"] = kept
			if err := writeConf(path, path, conf); err != nil {
				return err
			}
		}
	}
	return nil
}

func readConf(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	conf := map[string]any{}
	if err := json.Unmarshal(data, &conf); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	return conf, nil
}

// writeConf writes conf to out atomically and removes in if it is another file.
func writeConf(in, out string, conf map[string]any) error {
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".ztunnel-cni.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	if in != out {
		return os.Remove(in)
	}
	return nil
}
