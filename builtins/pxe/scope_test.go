package pxe_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/pxe"
)

// One server, two scopes (the roles of a multi-device job): each serves
// its own MAC's config and files at once, each scope's WaitFetch and Stop
// concern only its own boot, and a scope's new Serve replaces only its
// own; pin/tftp's client fetches as the two targets would.
func TestScopesServeTheirMACsAtOnce(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	dir, _ := jobDir(t, 1000)
	a, b := s.Scope("server"), s.Scope("client")
	serve := func(sc *pxe.Scoped, mac string) *pxe.Served {
		sv, err := sc.Serve(context.Background(), pxe.Boot{Kernel: "vmlinuz", Initrd: "initrd.gz", MAC: mac, JobDir: dir})
		if err != nil {
			t.Fatalf("Serve(%s): %v", mac, err)
		}
		return sv
	}
	sa := serve(a, "52:54:00:00:00:0a")
	sb := serve(b, "52:54:00:00:00:0b")
	c := tftpClient(t, s.TFTPAddr(), 0)
	for _, sv := range []*pxe.Served{sa, sb} {
		cfg, err := get(c, sv.Config)
		if err != nil || !strings.Contains(string(cfg), "basalt.nonce="+sv.Nonce) {
			t.Fatalf("get(%s) = %q, %v; want the config with nonce %s", sv.Config, cfg, err, sv.Nonce)
		}
	}
	if _, err := get(c, sb.Files["kernel"]); err != nil {
		t.Fatalf("get(%s): %v", sb.Files["kernel"], err)
	}
	// b's kernel went out, a's did not: a's wait is still waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.WaitFetch(ctx, "kernel"); builtins.ClassOf(err) != builtins.ClassDevice {
		t.Errorf("server WaitFetch(kernel) after the client's fetch = %v, want a device error (not fetched)", err)
	}
	if err := b.WaitFetch(context.Background(), "kernel"); err != nil {
		t.Errorf("client WaitFetch(kernel) = %v", err)
	}
	// a new Serve and a Stop in one scope leave the other's boot alone
	sa2 := serve(a, "52:54:00:00:00:0a")
	if _, err := get(c, sa.Files["kernel"]); err == nil {
		t.Errorf("get(%s) after the scope served again succeeded, want file not found", sa.Files["kernel"])
	}
	b.Stop()
	if _, err := get(c, sb.Config); err == nil {
		t.Errorf("get(%s) after the client's Stop succeeded", sb.Config)
	}
	if _, err := get(c, sa2.Config); err != nil {
		t.Errorf("get(%s) after the client's Stop = %v, want the server's config", sa2.Config, err)
	}
	// the Server's own scope is another one still
	if err := s.WaitFetch(ctx, "kernel"); builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("Server.WaitFetch with nothing served in its own scope = %v, want a job error", err)
	}
}
