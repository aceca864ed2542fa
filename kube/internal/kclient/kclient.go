// Package kclient is the Kubernetes client of the agent and of `ztunnel check`: REST
// clients for the three API groups they read (core, apps, discovery.k8s.io) on a
// scheme of only those groups, plus client-go's dynamic client for Istio's CRDs.
//
// Why not client-go's Clientset and informer factory: both pull in
// k8s.io/client-go/kubernetes/scheme, which registers the types of every API group
// (about 40 of them) and made the binary 50 MB; this keeps client-go's transport,
// auth, informers (tools/cache), listers and event recorder, and drops the rest.
package kclient

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Scheme knows the types of the core, apps and discovery.k8s.io v1 groups.
var Scheme = runtime.NewScheme()

var codecs serializer.CodecFactory

func init() {
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, discoveryv1.AddToScheme} {
		if err := add(Scheme); err != nil {
			panic(err) // a programming error: the groups are compiled in
		}
	}
	codecs = serializer.NewCodecFactory(Scheme)
}

// Client holds one REST client per group, sharing a connection pool; each gets
// client-go's default rate limit (QPS/Burst from the config), as a Clientset's do.
type Client struct {
	Core      *rest.RESTClient // /api/v1
	Apps      *rest.RESTClient // /apis/apps/v1
	Discovery *rest.RESTClient // /apis/discovery.k8s.io/v1
	Dynamic   *dynamic.DynamicClient
	// Host is the API server's address, for messages.
	Host string
}

// New builds the clients from a rest.Config.
func New(rc *rest.Config) (*Client, error) {
	base := rest.CopyConfig(rc)
	if base.UserAgent == "" {
		base.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	httpClient, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, err
	}
	c := &Client{Host: base.Host}
	for _, g := range []struct {
		out     **rest.RESTClient
		gv      schema.GroupVersion
		apiPath string
	}{{&c.Core, corev1.SchemeGroupVersion, "/api"}, {&c.Apps, appsv1.SchemeGroupVersion, "/apis"},
		{&c.Discovery, discoveryv1.SchemeGroupVersion, "/apis"}} {
		cfg := rest.CopyConfig(base)
		gv := g.gv
		cfg.GroupVersion, cfg.APIPath = &gv, g.apiPath
		cfg.NegotiatedSerializer = codecs.WithoutConversion()
		if *g.out, err = rest.RESTClientForConfigAndClient(cfg, httpClient); err != nil {
			return nil, err
		}
	}
	if c.Dynamic, err = dynamic.NewForConfigAndClient(base, httpClient); err != nil {
		return nil, err
	}
	return c, nil
}

var parameterCodec = runtime.NewParameterCodec(Scheme)

// GetPod reads one pod.
func (c *Client) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := c.Core.Get().Namespace(ns).Resource("pods").Name(name).Do(ctx).Into(pod)
	return pod, err
}

// ListPods lists pods of `ns` ("" for all namespaces), one page per call.
func (c *Client) ListPods(ctx context.Context, ns string, opts metav1.ListOptions) (*corev1.PodList, error) {
	list := &corev1.PodList{}
	err := c.Core.Get().Namespace(ns).Resource("pods").VersionedParams(&opts, parameterCodec).Do(ctx).Into(list)
	return list, err
}

// MergePatchPod applies a JSON merge patch to a pod.
func (c *Client) MergePatchPod(ctx context.Context, ns, name string, patch []byte) error {
	return c.Core.Patch(types.MergePatchType).Namespace(ns).Resource("pods").Name(name).Body(patch).Do(ctx).Error()
}

// ListNamespaces lists every namespace.
func (c *Client) ListNamespaces(ctx context.Context) (*corev1.NamespaceList, error) {
	list := &corev1.NamespaceList{}
	err := c.Core.Get().Resource("namespaces").Do(ctx).Into(list)
	return list, err
}

// GetSecret reads one Secret.
func (c *Client) GetSecret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := c.Core.Get().Namespace(ns).Resource("secrets").Name(name).Do(ctx).Into(s)
	return s, err
}

// GetConfigMap reads one ConfigMap.
func (c *Client) GetConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := c.Core.Get().Namespace(ns).Resource("configmaps").Name(name).Do(ctx).Into(cm)
	return cm, err
}

// GetDaemonSet reads one DaemonSet.
func (c *Client) GetDaemonSet(ctx context.Context, ns, name string) (*appsv1.DaemonSet, error) {
	ds := &appsv1.DaemonSet{}
	err := c.Apps.Get().Namespace(ns).Resource("daemonsets").Name(name).Do(ctx).Into(ds)
	return ds, err
}

// PodProxyGet is GET through the API server's pod proxy: port `port` of the pod,
// path `path`.
func (c *Client) PodProxyGet(ctx context.Context, ns, pod, port, path string) ([]byte, error) {
	return c.Core.Get().Namespace(ns).Resource("pods").Name(pod + ":" + port).SubResource("proxy").
		Suffix(path).DoRaw(ctx)
}

// ServerVersion is GET /version.
func (c *Client) ServerVersion(ctx context.Context) (*version.Info, error) {
	raw, err := c.Core.Get().AbsPath("/version").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	info := &version.Info{}
	if err := json.Unmarshal(raw, info); err != nil {
		return nil, fmt.Errorf("GET /version: %w", err)
	}
	return info, nil
}

// ServesResource says whether the API serves `gvr` (a CRD may be installed later).
func (c *Client) ServesResource(ctx context.Context, gvr schema.GroupVersionResource) (bool, error) {
	raw, err := c.Core.Get().AbsPath("/apis", gvr.Group, gvr.Version).DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	list := &metav1.APIResourceList{}
	if err := json.Unmarshal(raw, list); err != nil {
		return false, fmt.Errorf("GET /apis/%s: %w", gvr.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true, nil
		}
	}
	return false, nil
}

// Informer is a shared informer of one resource of a group's REST client, with the
// namespace index listers need; `tweak` edits the list options (a field selector).
func Informer(client *rest.RESTClient, resource string, obj runtime.Object, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {} // client-go calls it unconditionally
	}
	lw := cache.NewFilteredListWatchFromClient(client, resource, metav1.NamespaceAll, tweak)
	return cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}
