package outputs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// httpSink posts batches to one collector; shape builds the body and reads
// the answer of a 2xx.
type httpSink struct {
	client *http.Client
	url    string
	header http.Header
	body   func(recs []Record) ([]byte, error)
	// result judges a 2xx answer: the records to try again and those refused.
	result func(recs []Record, answer []byte) ([]Record, int, error)
}

func newHTTP(u *url.URL, transport string, tc *tls.Config) (*httpSink, error) {
	if transport != "http" && transport != "https" {
		return nil, fmt.Errorf("over %q (want http or https)", transport)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &httpSink{
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		header: http.Header{},
	}, nil
}

// retryable reports whether a collector's status means "later": busy (429)
// or failing (5xx). Any other refusal would be refused again.
func retryable(status int) bool { return status == http.StatusTooManyRequests || status >= 500 }

func (s *httpSink) Send(ctx context.Context, recs []Record) ([]Record, int, error) {
	body, err := s.body(recs)
	if err != nil {
		return nil, len(recs), err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, len(recs), err
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return recs, 0, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	switch {
	case err != nil:
		return recs, 0, fmt.Errorf("POST %s: reading the answer: %w", s.url, err)
	case retryable(resp.StatusCode):
		return recs, 0, fmt.Errorf("POST %s: %s: %s", s.url, resp.Status, snippet(answer))
	case resp.StatusCode/100 != 2:
		return nil, len(recs), fmt.Errorf("POST %s: %s: %s", s.url, resp.Status, snippet(answer))
	}
	return s.result(recs, answer)
}

// acknowledges: a 2xx answer (and, for _bulk, each item's status) says what
// the collector took.
func (s *httpSink) acknowledges() {}

func (s *httpSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// newHEC posts to Splunk's HTTP Event Collector: one JSON object per record,
// concatenated, with the token in the Authorization header. The answer is
// all or nothing for the batch.
func newHEC(u *url.URL, transport string, tc *tls.Config, tokenFile string) (Sink, error) {
	s, err := newHTTP(u, transport, tc)
	if err != nil {
		return nil, err
	}
	token := os.Getenv("DRIFT_HEC_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, fmt.Errorf("no HEC token: set $DRIFT_HEC_TOKEN or add ?token-file=FILE")
	}
	path := u.Path
	if path == "" || path == "/" {
		path = "/services/collector/event"
	}
	s.url = transport + "://" + u.Host + path
	s.header.Set("Authorization", "Splunk "+token)
	s.header.Set("Content-Type", "application/json")
	s.body = hecBody
	s.result = func([]Record, []byte) ([]Record, int, error) { return nil, 0, nil }
	return s, nil
}

// hecEvent is one event in HEC's format.
type hecEvent struct {
	Time       float64         `json:"time"` // seconds since the epoch
	Host       string          `json:"host,omitempty"`
	Source     string          `json:"source"`
	Sourcetype string          `json:"sourcetype"`
	Event      json.RawMessage `json:"event"`
}

func hecBody(recs []Record) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range recs {
		if err := enc.Encode(hecEvent{
			Time:       float64(r.Time.UnixMicro()) / 1e6,
			Host:       r.Host,
			Source:     syslogApp,
			Sourcetype: syslogApp + ":" + r.Source,
			Event:      r.Doc,
		}); err != nil {
			return nil, fmt.Errorf("record %s: %w", r.ID, err)
		}
	}
	return b.Bytes(), nil
}

// newBulk posts to Elastic's _bulk API: a create action with the record's id
// as _id per document, so a record sent twice is stored once (409 for the
// second). The answer says per item what happened.
func newBulk(u *url.URL, transport string, tc *tls.Config) (Sink, error) {
	s, err := newHTTP(u, transport, tc)
	if err != nil {
		return nil, err
	}
	index := strings.Trim(u.Path, "/")
	if index == "" || strings.Contains(index, "/") {
		return nil, fmt.Errorf("want the index as the path: bulk+https://HOST:9200/INDEX")
	}
	s.url = transport + "://" + u.Host + "/_bulk"
	if u.User != nil {
		pw, _ := u.User.Password()
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(u.User.Username(), pw)
		s.header.Set("Authorization", req.Header.Get("Authorization"))
	}
	s.header.Set("Content-Type", "application/x-ndjson")
	s.body = func(recs []Record) ([]byte, error) { return bulkBody(index, recs) }
	s.result = bulkResult
	return s, nil
}

type bulkAction struct {
	Create struct {
		Index string `json:"_index"`
		ID    string `json:"_id"`
	} `json:"create"`
}

func bulkBody(index string, recs []Record) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range recs {
		var a bulkAction
		a.Create.Index, a.Create.ID = index, r.ID
		if err := enc.Encode(a); err != nil {
			return nil, err
		}
		// _bulk wants each document on one line.
		if err := json.Compact(&b, r.Doc); err != nil {
			return nil, fmt.Errorf("record %s: %w", r.ID, err)
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// bulkAnswer is the part of _bulk's answer read here.
type bulkAnswer struct {
	Errors bool `json:"errors"`
	Items  []map[string]struct {
		Status int             `json:"status"`
		Error  json.RawMessage `json:"error"`
	} `json:"items"`
}

func bulkResult(recs []Record, answer []byte) ([]Record, int, error) {
	var a bulkAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return recs, 0, fmt.Errorf("_bulk answer is not JSON: %v: %s", err, snippet(answer))
	}
	if !a.Errors {
		return nil, 0, nil
	}
	if len(a.Items) != len(recs) {
		return recs, 0, fmt.Errorf("_bulk answered %d items for %d documents", len(a.Items), len(recs))
	}
	var retry []Record
	refused := 0
	var last error
	for i, item := range a.Items {
		for _, res := range item {
			switch {
			case res.Status/100 == 2, res.Status == http.StatusConflict: // 409: stored already, by an earlier send
			case retryable(res.Status):
				retry = append(retry, recs[i])
				last = fmt.Errorf("document %s: status %d: %s", recs[i].ID, res.Status, snippet(res.Error))
			default:
				refused++
				last = fmt.Errorf("document %s: status %d: %s", recs[i].ID, res.Status, snippet(res.Error))
			}
		}
	}
	return retry, refused, last
}
