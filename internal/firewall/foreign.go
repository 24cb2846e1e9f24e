package firewall

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// ForeignForwardDrop lists the base chains of other tables that sit on a
// forward hook with policy drop, as "FAMILY TABLE CHAIN" (e.g. "ip filter
// FORWARD"). Any of them can drop what pontoon's table accepts; `pontoon
// doctor` shows them (with DOCKER-USER, pontoon handles Docker's).
//
// It runs `nft -j list chains` in the caller's network namespace: chains
// only, no rules, so it stays cheap on hosts with large rulesets.
func ForeignForwardDrop(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, "nft", "-j", "list", "chains")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft -j list chains: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseForwardDrop(stdout.Bytes())
}

func parseForwardDrop(js []byte) ([]string, error) {
	var doc struct {
		Nftables []struct {
			Chain *struct {
				Family string `json:"family"`
				Table  string `json:"table"`
				Name   string `json:"name"`
				Hook   string `json:"hook"`
				Policy string `json:"policy"`
			} `json:"chain"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("parse nft -j list chains: %w", err)
	}
	var out []string
	for _, o := range doc.Nftables {
		c := o.Chain
		if c == nil || c.Hook != "forward" || c.Policy != "drop" {
			continue
		}
		if c.Family == "inet" && c.Table == TableName {
			continue // ours (and ours never drops by policy)
		}
		out = append(out, c.Family+" "+c.Table+" "+c.Name)
	}
	return out, nil
}
