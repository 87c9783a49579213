package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQMP plays the server side of QMP over conn: it greets, then answers
// each command with answer(cmd, args), sending any events first.
func fakeQMP(t *testing.T, conn net.Conn, answer func(cmd string, args json.RawMessage) (events []string, reply string)) {
	t.Helper()
	go func() {
		defer conn.Close()
		w := bufio.NewWriter(conn)
		w.WriteString(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}` + "\n")
		w.Flush()
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
				ID        json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
				t.Errorf("fake qmp: bad request %q: %v", sc.Text(), err)
				return
			}
			events, reply := answer(req.Execute, req.Arguments)
			for _, e := range events {
				w.WriteString(e + "\n")
			}
			if reply != "" {
				reply = strings.TrimSuffix(reply, "}") + `, "id": ` + string(req.ID) + "}"
				w.WriteString(reply + "\n")
			}
			w.Flush()
		}
	}()
}

func TestQMPFake(t *testing.T) {
	client, server := net.Pipe()
	var mu sync.Mutex
	var got []string
	fakeQMP(t, server, func(cmd string, args json.RawMessage) ([]string, string) {
		mu.Lock()
		got = append(got, cmd)
		mu.Unlock()
		switch cmd {
		case "qmp_capabilities":
			return nil, `{"return": {}}`
		case "query-status":
			return []string{`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}`},
				`{"return": {"status": "running", "singlestep": false, "running": true}}`
		case "qom-set":
			return nil, `{"error": {"class": "GenericError", "desc": "Boot index 1 used by multiple devices"}}`
		case "system_reset":
			return []string{`{"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}, "timestamp": {"seconds": 1, "microseconds": 3}}`},
				`{"return": {}}`
		}
		return nil, `{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var evMu sync.Mutex
	var events []string
	q, err := StartQMP(ctx, client, func(e Event) {
		evMu.Lock()
		events = append(events, e.Name)
		evMu.Unlock()
	})
	if err != nil {
		t.Fatalf("StartQMP: %v", err)
	}
	defer q.Close()

	st, err := q.QueryStatus(ctx)
	if err != nil || st != (Status{Running: true, Status: "running"}) {
		t.Errorf("QueryStatus() = %+v, %v, want running", st, err)
	}

	_, err = q.Execute(ctx, "qom-set", map[string]any{"path": "/machine/peripheral/x", "property": "bootindex", "value": 1})
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Class != "GenericError" || ce.Command != "qom-set" {
		t.Errorf("Execute(qom-set) error = %v, want a GenericError CommandError", err)
	}

	resets, unsub := q.Subscribe("RESET")
	if _, err := q.Execute(ctx, "system_reset", nil); err != nil {
		t.Fatalf("system_reset: %v", err)
	}
	select {
	case e := <-resets:
		if !strings.Contains(string(e.Data), "host-qmp-system-reset") {
			t.Errorf("RESET data = %s, want the reason", e.Data)
		}
	case <-ctx.Done():
		t.Fatal("no RESET event")
	}
	unsub()

	if _, err := q.Execute(ctx, "no-such", nil); !errors.As(err, &ce) || ce.Class != "CommandNotFound" {
		t.Errorf("Execute(no-such) error = %v, want CommandNotFound", err)
	}
	mu.Lock()
	want := []string{"qmp_capabilities", "query-status", "qom-set", "system_reset", "no-such"}
	if !slices.Equal(got, want) {
		t.Errorf("server saw %v, want %v", got, want)
	}
	mu.Unlock()
	evMu.Lock()
	if !slices.Equal(events, []string{"RESUME", "RESET"}) {
		t.Errorf("events = %v, want [RESUME RESET]", events)
	}
	evMu.Unlock()

	// The server going away fails later commands instead of hanging them.
	server.Close()
	<-q.Done()
	if _, err := q.Execute(ctx, "query-status", nil); err == nil {
		t.Error("Execute after the server closed = nil error, want one")
	}
}

func TestQMPBadGreeting(t *testing.T) {
	for _, greeting := range []string{`{"return": {}}`, `not json`, ``} {
		client, server := net.Pipe()
		go func() {
			server.Write([]byte(greeting + "\n"))
			server.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		q, err := StartQMP(ctx, client, nil)
		cancel()
		if err == nil {
			q.Close()
			t.Errorf("StartQMP(greeting %q) = nil error, want one", greeting)
		}
		client.Close()
	}
}

func TestQMPGreetingTimeout(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := StartQMP(ctx, client, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("StartQMP(silent server) = %v, want DeadlineExceeded", err)
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"QMP": {"version": {}, "capabilities": []}}`,
		`{"return": {}, "id": "1"}`,
		`{"error": {"class": "GenericError", "desc": "x"}, "id": 7}`,
		`{"event": "RESET", "data": {"guest": true}, "timestamp": {"seconds": 1}}`,
		`{}`, `[]`, `null`, `{"return": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := parseMessage(line)
		if err != nil {
			return
		}
		if m.Event == "" && m.Return == nil && m.Error == nil && m.Greeting == nil {
			t.Errorf("parseMessage(%q) accepted a message of no kind", line)
		}
	})
}
