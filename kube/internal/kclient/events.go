package kclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// repeatWindow: a repeat of an event within it bumps the first one's count.
const repeatWindow = 10 * time.Minute

// Recorder posts events about objects, off the caller's goroutine. A repeat of one
// (object, type, reason, message) within 10 minutes bumps the first event's count
// and lastTimestamp, as client-go's correlator does, so a failure retried every few
// seconds stays one event; as there, one object gets at most 25 events and then one
// per 5 minutes, and a write the API server failed (5xx, 429, no answer) is retried
// twice. (client-go's tools/record would do this too, but its
// strategic-merge machinery pulls in the OpenAPI models: 8 MB of the binary.)
type Recorder struct {
	client *Client
	source corev1.EventSource
	queue  chan *corev1.Event
	mu     sync.Mutex
	recent map[string]*corev1.Event // key: object, type, reason, message
	limits map[string]*rate.Limiter // key: object
}

// NewRecorder starts a recorder reporting as `component` on `host`.
func NewRecorder(c *Client, component, host string) *Recorder {
	r := &Recorder{client: c, source: corev1.EventSource{Component: component, Host: host},
		queue: make(chan *corev1.Event, 100), recent: map[string]*corev1.Event{},
		limits: map[string]*rate.Limiter{}}
	go r.run()
	return r
}

// Event queues an event about `ref`; it is dropped (and logged) when 100 are queued.
func (r *Recorder) Event(ref *corev1.ObjectReference, eventType, reason, message string) {
	now := metav1.Now()
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ns},
		InvolvedObject: *ref, Type: eventType, Reason: reason, Message: message, Source: r.source,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: r.source.Component, ReportingInstance: r.source.Host,
	}
	object := fmt.Sprintf("%s/%s/%s/%s", ref.Kind, ref.Namespace, ref.Name, ref.UID)
	r.mu.Lock()
	limit := r.limits[object]
	if limit == nil {
		if len(r.limits) > 4096 {
			r.limits = map[string]*rate.Limiter{} // a crude bound; objects come and go
		}
		limit = rate.NewLimiter(rate.Every(5*time.Minute), 25)
		r.limits[object] = limit
	}
	allowed := limit.Allow()
	r.mu.Unlock()
	if !allowed {
		klog.V(2).InfoS("event dropped: too many for this object", "object", ref.Namespace+"/"+ref.Name, "reason", reason)
		return
	}
	select {
	case r.queue <- ev:
	default:
		klog.InfoS("event dropped: too many queued", "object", ref.Namespace+"/"+ref.Name, "reason", reason)
	}
}

func (r *Recorder) run() {
	for ev := range r.queue {
		err := r.post(ev)
		for attempt := 1; err != nil && attempt <= 2 && retriable(err); attempt++ {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
			err = r.post(ev)
		}
		if err != nil {
			klog.InfoS("could not write an event", "object", ev.InvolvedObject.Namespace+"/"+ev.InvolvedObject.Name,
				"reason", ev.Reason, "err", err)
		}
	}
}

func (r *Recorder) post(ev *corev1.Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := ev.InvolvedObject
	key := fmt.Sprintf("%s/%s/%s/%s\x00%s\x00%s\x00%s", o.Kind, o.Namespace, o.Name, o.UID, ev.Type, ev.Reason, ev.Message)
	r.mu.Lock()
	prior := r.recent[key]
	if len(r.recent) > 256 {
		for k, e := range r.recent {
			if ev.LastTimestamp.Sub(e.LastTimestamp.Time) > repeatWindow {
				delete(r.recent, k)
			}
		}
	}
	r.mu.Unlock()
	if prior != nil && ev.LastTimestamp.Sub(prior.LastTimestamp.Time) < repeatWindow {
		patch, _ := json.Marshal(map[string]any{"count": prior.Count + 1, "lastTimestamp": ev.LastTimestamp})
		out := &corev1.Event{}
		err := r.client.Core.Patch(types.MergePatchType).Namespace(prior.Namespace).Resource("events").
			Name(prior.Name).Body(patch).Do(ctx).Into(out)
		if err == nil {
			r.remember(key, out)
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		// The event expired on the server (its TTL is an hour): post a new one.
	}
	out := &corev1.Event{}
	if err := r.client.Core.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Into(out); err != nil {
		return err
	}
	r.remember(key, out)
	return nil
}

func (r *Recorder) remember(key string, ev *corev1.Event) {
	r.mu.Lock()
	r.recent[key] = ev
	r.mu.Unlock()
}

// retriable: the API server failed or did not answer; a refusal (4xx) stays one.
func retriable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		return code >= 500 || code == 429
	}
	return true
}
