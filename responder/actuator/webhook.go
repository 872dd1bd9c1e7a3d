package actuator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Webhook POSTs the Target as JSON to URL and retries with exponential
// backoff on network errors, 5xx and 429. The Idempotency-Key header is the
// same on every try, so the receiver can drop repeats.
type Webhook struct {
	URL      string
	Client   *http.Client  // http.DefaultClient if nil
	Tries    int           // attempts in all; 5 if 0
	Backoff  time.Duration // first wait between tries, doubled each time; 100ms if 0
	MaxWait  time.Duration // cap on one wait; 5s if 0
	Header   http.Header   // extra headers, e.g. Authorization
	Attempts func(n int, err error)
}

// Name identifies the actuator in the audit trail.
func (w *Webhook) Name() string { return "webhook" }

// Destroy posts t.
func (w *Webhook) Destroy(ctx context.Context, t Target) error { return w.Post(ctx, t) }

// Cordon posts t.
func (w *Webhook) Cordon(ctx context.Context, t Target) error { return w.Post(ctx, t) }

// Post sends t until it is accepted (2xx), refused (4xx but 429), tries run
// out or ctx ends.
func (w *Webhook) Post(ctx context.Context, t Target) error {
	if t.Schema == "" {
		t.Schema = TargetSchema
	}
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	tries, wait, maxWait := w.Tries, w.Backoff, w.MaxWait
	if tries <= 0 {
		tries = 5
	}
	if wait <= 0 {
		wait = 100 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Second
	}
	var last error
	for n := 1; ; n++ {
		retry, err := w.once(ctx, client, body, t)
		if w.Attempts != nil {
			w.Attempts(n, err)
		}
		if err == nil {
			return nil
		}
		last = err
		if !retry || n >= tries {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("webhook %s: %w (last try: %v)", w.URL, ctx.Err(), last)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
	return fmt.Errorf("webhook %s: gave up: %w", w.URL, last)
}

func (w *Webhook) once(ctx context.Context, client *http.Client, body []byte, t Target) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	for k, vs := range w.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", t.Incident+"/"+t.Action)
	resp, err := client.Do(req)
	if err != nil {
		return ctx.Err() == nil, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("status %s: %s", resp.Status, bytes.TrimSpace(msg))
	default:
		return false, fmt.Errorf("refused with status %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
}
