package sol

import "strconv"

// Terminal size the console claims when a device asks where the cursor
// is: the VT100's, and what Linux and busybox assume of a serial line
// whose size no one set (TIOCGWINSZ 0x0).
const (
	termCols = 80
	termRows = 24
)

// term is the little of a VT100 a console needs to answer the device's
// cursor position report request, DSR 6 ("ESC [ 6 n", ECMA-48 8.3.35;
// the answer is CPR, "ESC [ row ; col R", 8.3.14), as the terminal on
// the other end of a serial line does.
//
// Why: busybox's line editing (libbb/lineedit.c, ask_terminal) prints
// "ESC [ 6 n" after every prompt and, when Enter comes before the
// answer, sleeps 20 ms (usleep(20*1000), "UGLY!") before it runs the
// line, so a console that never answers costs every target.run 20 ms of
// a ~25 ms round trip on a qemu guest. U-Boot's EFI console sizes the
// terminal the same way ("ESC [ 999 ; 999 H ESC [ 6 n" in
// lib/efi_loader/efi_console.c) and waits for the answer.
//
// It follows the cursor through the device's output: printable
// characters (UTF-8 sequences count once) with autowrap at the last
// column, CR, LF (the row stops at the last one: the screen scrolls), BS,
// HT (stops every 8 columns), CUP/HVP ("ESC [ r ; c H"), CUU/CUD/CUF/CUB,
// and DECSC/DECRC ("ESC 7", "ESC 8"). Other escape and control sequences
// move nothing. Bytes may come in any chunks: the state carries over.
type term struct {
	row, col   int // 0-based; col == termCols is the pending wrap
	saveRow    int
	saveCol    int
	state      termState
	params     []byte // of the CSI being read
	utf8Remain int
}

type termState uint8

const (
	stGround    termState = iota
	stEsc                 // after ESC
	stCSI                 // after ESC [
	stString              // OSC, DCS, APC, PM, SOS: up to BEL or ESC \
	stStringEsc           // ESC inside a string
)

// maxParams bounds a CSI's parameter bytes: longer ones are garbage and
// move nothing.
const maxParams = 32

// write follows p and returns the answers the device asked for (nil for
// none), in order, and whether p had a line feed before the first
// request.
func (t *term) write(p []byte) (answers []byte, afterLF bool) { return t.feed(p, true) }

// feed is write; bulk takes runs of printable ASCII at once (every
// console byte passes here), which must come to what one byte at a time
// does (FuzzTerm).
func (t *term) feed(p []byte, bulk bool) (answers []byte, afterLF bool) {
	var out []byte
	for i := 0; i < len(p); i++ {
		b := p[i]
		if b == '\n' && out == nil {
			afterLF = true
		}
		switch t.state {
		case stGround:
			if n := printableRun(p[i:]); bulk && n > 1 && t.utf8Remain == 0 {
				t.printed(n)
				i += n - 1
				continue
			}
			t.ground(b)
		case stEsc:
			t.state = stGround
			switch b {
			case '[':
				t.state, t.params = stCSI, t.params[:0]
			case ']', 'P', '_', '^', 'X':
				t.state = stString
			case '7':
				t.saveRow, t.saveCol = t.row, t.col
			case '8':
				t.row, t.col = t.saveRow, t.saveCol
			case 0x1b:
				t.state = stEsc
			}
		case stCSI:
			switch {
			case b >= 0x40 && b <= 0x7e:
				t.state = stGround
				out = t.csi(b, out)
			case b >= 0x20 && b < 0x40:
				if len(t.params) < maxParams {
					t.params = append(t.params, b)
				} else {
					t.params = append(t.params[:0], '?') // poisoned: ignored
				}
			case b == 0x1b:
				t.state = stEsc
			case b == 0x18 || b == 0x1a: // CAN, SUB abort the sequence
				t.state = stGround
			}
		case stString:
			switch b {
			case 0x07:
				t.state = stGround
			case 0x1b:
				t.state = stStringEsc
			}
		case stStringEsc:
			t.state = stString
			if b == '\\' {
				t.state = stGround
			}
		}
	}
	if out == nil {
		afterLF = false
	}
	return out, afterLF
}

// printableRun is how many bytes p starts with that are printable ASCII.
func printableRun(p []byte) int {
	for i, b := range p {
		if b < 0x20 || b > 0x7e {
			return i
		}
	}
	return len(p)
}

// printed moves the cursor over n printable characters, as n calls of
// ground would: autowrap deferred at the last column.
func (t *term) printed(n int) {
	if t.col >= termCols {
		t.col = 0
		t.row = min(t.row+1, termRows-1)
	}
	pos := t.col + n
	t.row = min(t.row+(pos-1)/termCols, termRows-1)
	t.col = (pos-1)%termCols + 1
}

func (t *term) ground(b byte) {
	switch {
	case b == 0x1b:
		t.state = stEsc
		t.utf8Remain = 0
	case b == '\r':
		t.col = 0
	case b == '\n' || b == 0x0b || b == 0x0c:
		t.row = min(t.row+1, termRows-1)
		t.col = min(t.col, termCols-1)
	case b == '\b':
		t.col = max(min(t.col, termCols-1)-1, 0)
	case b == '\t':
		t.col = min((min(t.col, termCols-1)/8+1)*8, termCols-1)
	case b < 0x20 || b == 0x7f:
		// other controls move nothing
	case b >= 0x80 && b < 0xc0 && t.utf8Remain > 0:
		t.utf8Remain-- // a continuation: the character was counted
	default:
		switch {
		case b >= 0xf0:
			t.utf8Remain = 3
		case b >= 0xe0:
			t.utf8Remain = 2
		case b >= 0xc0:
			t.utf8Remain = 1
		default:
			t.utf8Remain = 0
		}
		if t.col >= termCols { // autowrap (DECAWM), deferred as VT100s do
			t.col = 0
			t.row = min(t.row+1, termRows-1)
		}
		t.col++
	}
}

// csi carries out the CSI ending in final, and appends an answer to out
// if it asks for one.
func (t *term) csi(final byte, out []byte) []byte {
	if len(t.params) > 0 && t.params[0] >= '<' {
		return out // private (DEC) sequences: ESC [ ? 25 h and so on
	}
	args := t.args()
	arg := func(i int) int {
		if i < len(args) && args[i] > 0 {
			return args[i]
		}
		return 1
	}
	col := min(t.col, termCols-1)
	switch final {
	case 'n':
		if len(args) == 1 && args[0] == 6 {
			out = append(out, "\x1b["...)
			out = strconv.AppendInt(out, int64(t.row+1), 10)
			out = append(out, ';')
			out = strconv.AppendInt(out, int64(col+1), 10)
			out = append(out, 'R')
		}
	case 'H', 'f':
		t.row = min(arg(0), termRows) - 1
		t.col = min(arg(1), termCols) - 1
	case 'A':
		t.row = max(t.row-arg(0), 0)
		t.col = col
	case 'B':
		t.row = min(t.row+arg(0), termRows-1)
		t.col = col
	case 'C':
		t.col = min(col+arg(0), termCols-1)
	case 'D':
		t.col = max(col-arg(0), 0)
	case 'G':
		t.col = min(arg(0), termCols) - 1
	}
	return out
}

// args parses the CSI's parameters ("6", "999;999"); an empty one is 0.
// A parameter too large for an int saturates.
func (t *term) args() []int {
	var args []int
	n := 0
	for _, b := range t.params {
		switch {
		case b >= '0' && b <= '9':
			n = min(n*10+int(b-'0'), 1<<20)
		case b == ';':
			args = append(args, n)
			n = 0
		default:
			return nil // intermediates: not a sequence answered here
		}
	}
	return append(args, n)
}
