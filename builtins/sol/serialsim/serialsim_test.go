package serialsim

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func read(t *testing.T, r io.Reader) string {
	t.Helper()
	b := make([]byte, 1<<12)
	n, err := r.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func TestBufferKeepsNewestInOrder(t *testing.T) {
	l := New(Config{Buffer: 8})
	defer l.Close()
	l.Device().Write([]byte("0123"))
	l.Device().Write([]byte("456789ab"))
	if got := read(t, l.Host()); got != "456789ab" || l.Overflow() != 4 {
		t.Errorf("host read %q with overflow %d, want %q and 4", got, l.Overflow(), "456789ab")
	}
}

func TestDropFast(t *testing.T) {
	l := New(Config{TypeInterval: time.Hour})
	defer l.Close()
	l.Host().Write([]byte("abc"))
	if got := read(t, l.Device()); got != "abc" {
		t.Errorf("drop-fast off: device got %q, want %q", got, "abc")
	}
	l.SetDropFast(true)
	l.Host().Write([]byte("abc"))
	if got := read(t, l.Device()); got != "a" || l.KeysDropped() != 2 {
		t.Errorf("drop-fast on: device got %q, %d dropped; want %q, 2", got, l.KeysDropped(), "a")
	}
}

func TestDropNowLosesNothing(t *testing.T) {
	l := New(Config{})
	defer l.Close()
	p := Transport(l)
	ctx := context.Background()
	c1, err := p.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c1.Read(make([]byte, 10))
		errc <- err
	}()
	p.DropNow()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Read on a dropped connection = %v, want ErrClosed", err)
	}
	if _, err := c1.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write on a dropped connection = %v, want ErrClosed", err)
	}
	l.Device().Write([]byte("kept"))
	c2, err := p.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, c2); got != "kept" {
		t.Errorf("new connection read %q, want %q", got, "kept")
	}
	p.FailOpens(1)
	if _, err := p.Open(ctx); err == nil {
		t.Error("Open after FailOpens(1) succeeded")
	}
	if got := p.Opens(); got != 2 {
		t.Errorf("Opens() = %d, want 2", got)
	}
}

// Output dropped for want of a reader is reported, never silent: OnOverflow
// hears of each drop and the total, and Overflow agrees.
func TestOverflowReported(t *testing.T) {
	var dropped, total []int64
	l := New(Config{Buffer: 8, OnOverflow: func(d, tot int64) {
		dropped = append(dropped, d)
		total = append(total, tot)
	}})
	dev := l.Device()
	dev.Write([]byte("0123"))
	if len(dropped) != 0 {
		t.Fatalf("OnOverflow called %d times with room left, want 0", len(dropped))
	}
	dev.Write([]byte("456789")) // 10 bytes in an 8-byte buffer: 2 dropped
	dev.Write([]byte("abc"))    // 3 more
	if want := []int64{2, 3}; len(dropped) != 2 || dropped[0] != want[0] || dropped[1] != want[1] {
		t.Errorf("OnOverflow dropped = %v, want %v", dropped, want)
	}
	if len(total) != 2 || total[1] != 5 || l.Overflow() != 5 {
		t.Errorf("totals = %v, Overflow() = %d, want 5", total, l.Overflow())
	}
	if got := read(t, l.Host()); got != "56789abc" {
		t.Errorf("host reads %q, want the newest 8 bytes 56789abc", got)
	}
}
