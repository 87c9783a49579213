package bundle

import (
	"encoding/json"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// IndexGranularity is how close a console line's time in console.idx is
// to the time its first byte was written: bytes written within it of the
// last entry share that entry (a new stage always starts a new entry).
const IndexGranularity = 10 * time.Millisecond

// IndexEntry is one line of console.idx: the console.log bytes from
// Offset on were written from Time on, in Stage ("" between stages;
// "cleanup:NAME" in a cleanup function), until the next entry.
type IndexEntry struct {
	Offset int64     `json:"offset"`
	Time   time.Time `json:"time"`
	Stage  string    `json:"stage"`
}

// Index is console.idx, in file order (offsets never decrease).
type Index []IndexEntry

// At returns the entry that console byte off falls under: the last one
// whose Offset is at most off. ok is false when off is before the first.
func (ix Index) At(off int64) (e IndexEntry, ok bool) {
	i := sort.Search(len(ix), func(i int) bool { return ix[i].Offset > off })
	if i == 0 {
		return IndexEntry{}, false
	}
	return ix[i-1], true
}

// conIndex is the writer of console.log: it counts the bytes written and
// records in console.idx when they were written and in which stage.
type conIndex struct {
	off atomic.Int64 // bytes in console.log

	mu    sync.Mutex
	w     io.Writer // console.log
	idx   io.Writer // console.idx
	r     *Redactor
	stage string
	last  time.Time // of the last entry; zero before the first
	// stretches are the console's stages so far, for triage.
	stretches []stretch
}

func (c *conIndex) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	now := time.Now().UTC()
	if c.last.IsZero() || now.Sub(c.last) >= IndexGranularity {
		c.entry(now)
	}
	n, err := c.w.Write(p)
	c.off.Add(int64(n))
	return n, err
}

// setStage marks the console from here on as written in stage.
func (c *conIndex) setStage(stage string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if stage == c.stage {
		return
	}
	c.stage = stage
	off := c.off.Load()
	if n := len(c.stretches); n > 0 {
		c.stretches[n-1].end = off
	}
	c.stretches = append(c.stretches, stretch{stage: stage, start: off, end: -1})
	c.entry(time.Now().UTC())
}

// entry appends an index line at the current offset. c.mu is held.
func (c *conIndex) entry(now time.Time) {
	c.last = now
	line, _ := json.Marshal(IndexEntry{Offset: c.off.Load(), Time: now, Stage: c.stage})
	c.idx.Write(append([]byte(c.r.String(string(line))), '\n'))
}

// stageOf returns the console stage an event of type typ starts or ends,
// and whether it is such an event.
func stageOf(typ string, fields map[string]any) (string, bool) {
	switch typ {
	case "stage_start":
		s, _ := fields["stage"].(string)
		return s, true
	case "cleanup_start":
		s, _ := fields["cleanup"].(string)
		return "cleanup:" + s, true
	case "stage_end", "cleanup_end", "job_end":
		return "", true
	}
	return "", false
}
