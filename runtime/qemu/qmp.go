package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// QMP is a client of the QEMU Machine Protocol (qemu's docs/interop/qmp-spec):
// one JSON object per line each way. The server greets with {"QMP": ...},
// the client leaves capabilities negotiation mode with qmp_capabilities,
// then sends {"execute": cmd, "arguments": ..., "id": n} and gets back
// {"return": ..., "id": n} or {"error": {"class", "desc"}, "id": n}; events
// ({"event": name, "data": ..., "timestamp": ...}) arrive at any time in
// between. Commands are sent one at a time; responses are matched by id.
type QMP struct {
	conn io.ReadWriteCloser

	sendMu sync.Mutex // one command in flight
	nextID int

	mu      sync.Mutex
	waiting map[string]chan response
	subs    map[*subscription]struct{}
	onEvent func(Event)
	err     error // set once the reader stopped
	done    chan struct{}
}

// Event is an asynchronous QMP event.
type Event struct {
	Name string
	Data json.RawMessage
}

// CommandError is the error a QMP command returned (qmp-spec §2.4.2).
type CommandError struct {
	Command string
	Class   string
	Desc    string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// message is any server message; which fields are set says which kind.
type message struct {
	Greeting json.RawMessage `json:"QMP,omitempty"`
	Return   json.RawMessage `json:"return,omitempty"`
	Error    *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error,omitempty"`
	Event string          `json:"event,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	ID    json.RawMessage `json:"id,omitempty"`
}

type response struct {
	ret json.RawMessage
	err *CommandError
}

type subscription struct {
	name string
	ch   chan Event
}

// DialQMP connects to a QMP unix socket, reads the greeting and negotiates
// capabilities. onEvent, when not nil, is called for every event from the
// reader goroutine; it must not block or call back into the client.
func DialQMP(ctx context.Context, path string, onEvent func(Event)) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: dial %s: %w", path, err)
	}
	q, err := StartQMP(ctx, conn, onEvent)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// StartQMP runs the QMP handshake on conn and starts reading it. On error the
// caller still owns conn.
func StartQMP(ctx context.Context, conn io.ReadWriteCloser, onEvent func(Event)) (*QMP, error) {
	q := &QMP{
		conn:    conn,
		waiting: map[string]chan response{},
		subs:    map[*subscription]struct{}{},
		onEvent: onEvent,
		done:    make(chan struct{}),
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)

	// The greeting comes first; nothing else can arrive before it.
	greeted := make(chan error, 1)
	go func() {
		if !sc.Scan() {
			err := sc.Err()
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			greeted <- err
			return
		}
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			greeted <- fmt.Errorf("greeting: %w", err)
			return
		}
		if m.Greeting == nil {
			greeted <- fmt.Errorf("greeting: unexpected %q", truncate(sc.Bytes(), 80))
			return
		}
		greeted <- nil
	}()
	select {
	case err := <-greeted:
		if err != nil {
			return nil, fmt.Errorf("qmp: %w", err)
		}
	case <-ctx.Done():
		conn.Close() // unblocks the scanner goroutine
		return nil, fmt.Errorf("qmp: greeting: %w", ctx.Err())
	}
	go q.read(sc)
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		q.shutdown(err)
		return nil, err
	}
	return q, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// read dispatches server messages until the connection fails.
func (q *QMP) read(sc *bufio.Scanner) {
	for sc.Scan() {
		m, err := parseMessage(sc.Bytes())
		if err != nil {
			continue // a line we cannot read is not worth losing the VM over
		}
		q.dispatch(m)
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	q.shutdown(fmt.Errorf("qmp: connection closed: %w", err))
}

// parseMessage decodes one server line.
func parseMessage(line []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, err
	}
	if m.Event == "" && m.Return == nil && m.Error == nil && m.Greeting == nil {
		return nil, errors.New("not a QMP message")
	}
	return &m, nil
}

func (q *QMP) dispatch(m *message) {
	if m.Event != "" {
		ev := Event{Name: m.Event, Data: m.Data}
		q.mu.Lock()
		for s := range q.subs {
			if s.name == ev.Name {
				select {
				case s.ch <- ev:
				default: // the subscriber has what it needs
				}
			}
		}
		f := q.onEvent
		q.mu.Unlock()
		if f != nil {
			f(ev)
		}
		return
	}
	if m.Return == nil && m.Error == nil {
		return
	}
	q.mu.Lock()
	ch, ok := q.waiting[string(m.ID)]
	delete(q.waiting, string(m.ID))
	q.mu.Unlock()
	if !ok {
		return // the caller gave up on it
	}
	r := response{ret: m.Return}
	if m.Error != nil {
		r.err = &CommandError{Class: m.Error.Class, Desc: m.Error.Desc}
	}
	ch <- r
}

func (q *QMP) shutdown(err error) {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return
	}
	q.err = err
	q.mu.Unlock()
	q.conn.Close()
	close(q.done)
}

// Subscribe returns a channel that receives the next events named name
// (buffered, 4; later ones are dropped while it is full) and a function
// that ends the subscription. Subscribe before the command that causes
// the event so it cannot be missed.
func (q *QMP) Subscribe(name string) (<-chan Event, func()) {
	s := &subscription{name: name, ch: make(chan Event, 4)}
	q.mu.Lock()
	q.subs[s] = struct{}{}
	q.mu.Unlock()
	return s.ch, func() {
		q.mu.Lock()
		delete(q.subs, s)
		q.mu.Unlock()
	}
}

// Execute runs command with args (nil for none) and returns its "return"
// value. A command the server refused is a *CommandError.
func (q *QMP) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.sendMu.Lock()
	defer q.sendMu.Unlock()
	q.nextID++
	id := strconv.Itoa(q.nextID)
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	ch := make(chan response, 1)
	key := strconv.Quote(id)
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	q.waiting[key] = ch
	q.mu.Unlock()
	forget := func() {
		q.mu.Lock()
		delete(q.waiting, key)
		q.mu.Unlock()
	}
	// A write to a unix socket whose peer stopped reading could block;
	// closing the connection on cancellation unblocks it.
	stop := context.AfterFunc(ctx, func() { q.shutdown(fmt.Errorf("qmp: %w", ctx.Err())) })
	_, err = q.conn.Write(append(line, '\n'))
	stop()
	if err != nil {
		forget()
		q.shutdown(fmt.Errorf("qmp: write: %w", err))
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			r.err.Command = command
			return nil, r.err
		}
		return r.ret, nil
	case <-q.done:
		forget()
		return nil, fmt.Errorf("qmp %s: %w", command, q.Err())
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

// Err returns why the connection ended, nil while it is up.
func (q *QMP) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Done is closed when the connection has ended.
func (q *QMP) Done() <-chan struct{} { return q.done }

// Close closes the connection.
func (q *QMP) Close() error {
	q.shutdown(errors.New("qmp: closed"))
	return nil
}

// Status is the answer to query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "prelaunch", "running", "paused", "shutdown" ...
}

// QueryStatus runs query-status.
func (q *QMP) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	ret, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(ret, &s); err != nil {
		return s, fmt.Errorf("qmp query-status: %w", err)
	}
	return s, nil
}
