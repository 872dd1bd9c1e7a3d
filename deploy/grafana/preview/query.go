package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Window is the time range the panels show and how their queries are filled in.
type Window struct {
	Start, End time.Time
	Step       time.Duration
	Vars       map[string]string // from Dashboard.Vars
}

// Series is one line of a time series panel, one number of a stat, or one
// row of a table (Labels).
type Series struct {
	Legend string
	Labels model.Metric
	Points []model.SamplePair
}

// Last is the series' last value that is a number, and whether it has one.
func (s Series) Last() (float64, bool) {
	for i := len(s.Points) - 1; i >= 0; i-- {
		if v := float64(s.Points[i].Value); !math.IsNaN(v) {
			return v, true
		}
	}
	return 0, false
}

// Result is what one target's query returned.
type Result struct {
	Target Target
	Expr   string // with the variables filled in
	Series []Series
}

// PanelData is a panel with the results of its queries, in target order.
type PanelData struct {
	Panel   Panel
	Results []Result
}

// Fetch runs every panel's queries against the Prometheus server at url:
// instant targets at w.End, the others over the window. A failed query is an
// error naming the panel and the query; a query without data is not (the
// caller decides).
func Fetch(ctx context.Context, server string, d *Dashboard, w Window) ([]PanelData, error) {
	var out []PanelData
	for _, p := range d.Panels {
		pd := PanelData{Panel: p}
		for _, t := range p.Targets {
			expr, err := Expand(t.Expr, w.Vars)
			if err != nil {
				return nil, fmt.Errorf("panel %q target %s: %w", p.Title, t.RefID, err)
			}
			form := url.Values{"query": {expr}}
			if t.Instant {
				form.Set("time", unixSeconds(w.End))
			} else {
				form.Set("start", unixSeconds(w.Start))
				form.Set("end", unixSeconds(w.End))
				form.Set("step", strconv.FormatFloat(w.Step.Seconds(), 'f', -1, 64))
			}
			val, err := query(ctx, server, t.Instant, form)
			if err != nil {
				return nil, fmt.Errorf("panel %q target %s: %s on %s: %w", p.Title, t.RefID, expr, server, err)
			}
			pd.Results = append(pd.Results, Result{Target: t, Expr: expr, Series: series(val, t.LegendFormat)})
		}
		out = append(out, pd)
	}
	return out, nil
}

// query runs one query on Prometheus' HTTP API (/api/v1/query or
// query_range) and decodes its result with Prometheus' own model types.
func query(ctx context.Context, server string, instant bool, form url.Values) (model.Value, error) {
	path := "/api/v1/query_range"
	if instant {
		path = "/api/v1/query"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status, Error string
		Data          struct {
			ResultType string
			Result     json.RawMessage
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("HTTP %s: not a Prometheus API answer: %.200s", resp.Status, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, r.Error)
	}
	var val model.Value
	switch r.Data.ResultType {
	case "matrix":
		val = &model.Matrix{}
	case "vector":
		val = &model.Vector{}
	case "scalar":
		val = &model.Scalar{}
	default:
		return nil, fmt.Errorf("result type %q (want matrix, vector or scalar)", r.Data.ResultType)
	}
	if err := json.Unmarshal(r.Data.Result, val); err != nil {
		return nil, fmt.Errorf("%s result: %w", r.Data.ResultType, err)
	}
	return val, nil
}

func unixSeconds(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1e3, 'f', 3, 64)
}

// series turns a matrix or a vector into Series, in legend order.
func series(val model.Value, legend string) []Series {
	var out []Series
	switch v := val.(type) {
	case *model.Matrix:
		for _, s := range *v {
			out = append(out, Series{Legend: legendOf(legend, s.Metric), Labels: s.Metric, Points: s.Values})
		}
	case *model.Vector:
		for _, s := range *v {
			out = append(out, Series{Legend: legendOf(legend, s.Metric), Labels: s.Metric,
				Points: []model.SamplePair{{Timestamp: s.Timestamp, Value: s.Value}}})
		}
	case *model.Scalar:
		out = append(out, Series{Legend: legend, Points: []model.SamplePair{{Timestamp: v.Timestamp, Value: v.Value}}})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Legend < out[j].Legend })
	return out
}

var legendRef = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legendOf fills a Grafana legend format ({{label}}) from a series' labels;
// with no format, the series' label set names it.
func legendOf(format string, m model.Metric) string {
	if format == "" {
		return m.String()
	}
	return legendRef.ReplaceAllStringFunc(format, func(ref string) string {
		return string(m[model.LabelName(legendRef.FindStringSubmatch(ref)[1])])
	})
}
