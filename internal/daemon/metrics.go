package daemon

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"pontoon/internal/dns"
	"pontoon/internal/engine"
	"pontoon/internal/model"
)

// Metrics in the Prometheus text format at GET /metrics on the API socket
// (and on --metrics-addr when given). Timings come from the engine's event
// feed, read in-process; counts of objects, repairs and DNS come from the
// engine and the resolver at scrape time, so a scrape reflects the moment.

// opBuckets are latency buckets for attach, detach, publish and firewall
// syncs: from 0.25 ms to 2.5 s.
var opBuckets = []float64{0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

type metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	lost     prometheus.Counter
}

// newMetrics registers pontoon's collectors and starts following the event
// feed until ctx ends.
func newMetrics(ctx context.Context, eng *engine.Engine, resolver *dns.Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pontoon_operation_duration_seconds",
		Help:    "How long operations took: attach, detach, publish (ports of an attach), firewall_sync, repair.",
		Buckets: opBuckets,
	}, []string{"op"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pontoon_operation_errors_total",
		Help: "Operations that failed (and were rolled back), by operation.",
	}, []string{"op"})
	m.lost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pontoon_metrics_events_lost_total",
		Help: "Events the metrics reader missed (its buffer was full): durations then undercount.",
	})
	for _, op := range []string{"attach", "detach", "publish", "firewall_sync", "repair"} {
		m.duration.WithLabelValues(op)
	}
	for _, op := range []string{"attach", "detach", "create_network", "remove_network", "create_sandbox", "remove_sandbox", "firewall_sync"} {
		m.errors.WithLabelValues(op)
	}
	m.reg.MustRegister(m.duration, m.errors, m.lost,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{eng: eng, dns: resolver})
	_, sub := eng.Subscribe(0, false)
	go func() {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-sub.C:
				if n := sub.Lost(); n > 0 {
					m.lost.Add(float64(n))
				}
				m.observe(ev)
			}
		}
	}()
	return m
}

func (m *metrics) observe(ev model.Event) {
	op := ""
	switch ev.Kind {
	case model.EventAttached:
		op = "attach"
	case model.EventDetached:
		op = "detach"
	case model.EventPublished:
		op = "publish"
	case model.EventFirewallSynced:
		op = "firewall_sync"
	case model.EventRepaired, model.EventReleased:
		op = "repair"
	case model.EventFailed:
		m.errors.WithLabelValues(metricName(ev.Op)).Inc()
		return
	}
	if op != "" && ev.Seconds > 0 {
		m.duration.WithLabelValues(op).Observe(ev.Seconds)
	}
}

// metricName turns an event's op ("create-network") into a label value.
func metricName(op string) string {
	b := []byte(op)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Timeout: 10 * time.Second})
}

// stateCollector reads counts at scrape time.
type stateCollector struct {
	eng *engine.Engine
	dns *dns.Server
}

var (
	descEndpoints  = prometheus.NewDesc("pontoon_endpoints", "Endpoints (ready) per network.", []string{"network"}, nil)
	descMappings   = prometheus.NewDesc("pontoon_published_ports", "Published host ports per network (a range counts each port).", []string{"network"}, nil)
	descNetworks   = prometheus.NewDesc("pontoon_networks", "Networks.", nil, nil)
	descSandboxes  = prometheus.NewDesc("pontoon_sandboxes", "Sandboxes by kind.", []string{"kind"}, nil)
	descRepairs    = prometheus.NewDesc("pontoon_repairs_total", "Drift repaired by self-healing since the daemon started, by kind of object.", []string{"kind"}, nil)
	descUnrepaired = prometheus.NewDesc("pontoon_unrepaired", "Objects whose drift the last attempt could not repair.", nil, nil)
	descGarbage    = prometheus.NewDesc("pontoon_garbage_collected_total", "Kernel objects with pontoon's names that no record explained, deleted (links, namespace pins).", nil, nil)
	descReaper     = prometheus.NewDesc("pontoon_reaper_queue", "Detached endpoints waiting for their veths to be deleted.", nil, nil)
	descDNSQueries = prometheus.NewDesc("pontoon_dns_queries_total", "DNS queries to pontoon's resolvers.", nil, nil)
	descDNSAnswers = prometheus.NewDesc("pontoon_dns_answers_total", "DNS answers by rcode.", []string{"rcode"}, nil)
	descDNSFwd     = prometheus.NewDesc("pontoon_dns_forward_duration_seconds", "Time to an upstream's answer, for forwarded queries that got one.", nil, nil)
	descDNSFwdFail = prometheus.NewDesc("pontoon_dns_forward_failures_total", "Forwarded queries no upstream answered usefully.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEndpoints, descMappings, descNetworks, descSandboxes, descRepairs, descUnrepaired,
		descGarbage, descReaper, descDNSQueries, descDNSAnswers, descDNSFwd, descDNSFwdFail} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if nets, err := c.eng.Networks(); err == nil {
		ch <- prometheus.MustNewConstMetric(descNetworks, prometheus.GaugeValue, float64(len(nets)))
		for _, n := range nets {
			ports := 0
			for _, ep := range n.Endpoints {
				for _, p := range ep.Ports {
					ports += p.Len()
				}
			}
			ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, float64(len(n.Endpoints)), n.Name)
			ch <- prometheus.MustNewConstMetric(descMappings, prometheus.GaugeValue, float64(ports), n.Name)
		}
	}
	if sbs, err := c.eng.Sandboxes(); err == nil {
		kinds := map[model.SandboxKind]int{model.KindPontoon: 0, model.KindNetns: 0, model.KindPID: 0, model.KindHost: 0}
		for _, sb := range sbs {
			kinds[sb.Kind]++
		}
		for k, n := range kinds {
			ch <- prometheus.MustNewConstMetric(descSandboxes, prometheus.GaugeValue, float64(n), string(k))
		}
	}
	hs := c.eng.HealStatus()
	for _, k := range []string{engine.RepairBridge, engine.RepairVeth, engine.RepairPort, engine.RepairLink, engine.RepairAddress,
		engine.RepairRoute, engine.RepairRule, engine.RepairSysctl, engine.RepairFirewall, engine.RepairNamespace, engine.ReleaseGone} {
		ch <- prometheus.MustNewConstMetric(descRepairs, prometheus.CounterValue, float64(hs.Repairs[k]), k)
	}
	ch <- prometheus.MustNewConstMetric(descUnrepaired, prometheus.GaugeValue, float64(len(hs.Unrepaired)))
	ch <- prometheus.MustNewConstMetric(descGarbage, prometheus.CounterValue, float64(c.eng.GarbageCollected()))
	ch <- prometheus.MustNewConstMetric(descReaper, prometheus.GaugeValue, float64(c.eng.ReaperQueue()))
	if c.dns != nil {
		st := c.dns.Stats()
		ch <- prometheus.MustNewConstMetric(descDNSQueries, prometheus.CounterValue, float64(st.Queries))
		for rcode, n := range st.Answers {
			ch <- prometheus.MustNewConstMetric(descDNSAnswers, prometheus.CounterValue, float64(n), rcode)
		}
		ch <- prometheus.MustNewConstMetric(descDNSFwdFail, prometheus.CounterValue, float64(st.ForwardFailed))
		buckets := map[float64]uint64{}
		for _, b := range st.ForwardLatency.Buckets {
			buckets[b.LE] = b.Count
		}
		ch <- prometheus.MustNewConstHistogram(descDNSFwd, st.ForwardLatency.Count, st.ForwardLatency.SumSeconds, buckets)
	}
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		writeErrorStatus(w, http.StatusServiceUnavailable, "unavailable", "metrics are not set up yet: try again in a moment")
		return
	}
	s.metrics.ServeHTTP(w, r)
}
