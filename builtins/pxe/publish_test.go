package pxe_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/pxe"
)

// A preseed published from memory is served over HTTP, WaitFetch waits
// for it by name, WaitRequest sees a request for a file basalt does not
// have (an installer's archive mirror) with its 404, and a preseed never
// fetched is a device error at the timeout naming the file.
func TestPublishDataWaitRequest(t *testing.T) {
	s, _ := startServer(t, pxe.Config{})
	const preseed = "d-i debian-installer/locale string en_US\n"
	u, err := s.PublishData("preseed.cfg", []byte(preseed))
	if err != nil {
		t.Fatal(err)
	}
	if want := s.HTTPURL() + "/files/preseed.cfg"; u != want {
		t.Errorf("PublishData URL = %s, want %s", u, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = s.WaitFetch(ctx, "preseed.cfg")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || builtins.ClassOf(err) != builtins.ClassDevice || !strings.Contains(err.Error(), "did not fetch files/preseed.cfg") {
		t.Errorf("WaitFetch(preseed.cfg) before any fetch = %v (class %v), want a device error naming files/preseed.cfg", err, builtins.ClassOf(err))
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != preseed {
		t.Errorf("GET %s = %q, want the preseed", u, body)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitFetch(ctx, "preseed.cfg"); err != nil {
		t.Errorf("WaitFetch(preseed.cfg) after the GET = %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		if r, err := http.Get(s.HTTPURL() + "/debian/dists/bookworm/Release"); err == nil {
			r.Body.Close()
		}
	}()
	r, err := s.WaitRequest(ctx, "debian/")
	if err != nil || r.File != "debian/dists/bookworm/Release" || r.Status != http.StatusNotFound {
		t.Errorf("WaitRequest(debian/) = %+v, %v; want the Release request answered 404", r, err)
	}
	if got := s.Leases(); len(got) != 0 {
		t.Errorf("Leases() without server mode = %v, want none", got)
	}
}
