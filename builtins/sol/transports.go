package sol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TCP is a raw TCP console, such as ser2net in raw mode.
type TCP struct {
	Addr string // host:port
}

// Open dials the console server.
func (t TCP) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

func (t TCP) String() string { return "tcp " + t.Addr }

// Command is a console reached by running a connection command under a
// pseudo-terminal, such as `ipmitool -I lanplus ... sol activate` or
// `telnet localhost 4006`. The pty is in raw mode, so the command sees
// keystrokes unchanged; a command that wants a cooked terminal sets it
// itself. The command exiting is a lost connection: the console runs it
// again. Closing the connection kills the command's process group.
type Command struct {
	Argv []string
	Env  []string // added to the environment of basalt
	Dir  string
}

// String names the command by its program only: its arguments may hold a
// password.
func (c Command) String() string {
	if len(c.Argv) == 0 {
		return "command"
	}
	return "command " + c.Argv[0]
}

// Open starts the command under a new pty.
func (c Command) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	if len(c.Argv) == 0 {
		return nil, errors.New("command console: empty command")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	defer tty.Close()
	if err := makeRaw(tty); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("pty raw mode: %w", err)
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	// A session of its own: the pty is its controlling terminal, and its
	// process group can be killed as one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("start %s: %w", c.Argv[0], err)
	}
	pc := &ptyConn{File: ptmx, cmd: cmd, exited: make(chan struct{})}
	go func() {
		pc.waitErr = cmd.Wait()
		close(pc.exited)
	}()
	return pc, nil
}

// makeRaw puts a terminal in raw mode, as cfmakeraw(3).
func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

type ptyConn struct {
	*os.File
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	once    sync.Once
}

// Read maps the pty's EIO after the command exited to an error that says so.
func (p *ptyConn) Read(b []byte) (int, error) {
	n, err := p.File.Read(b)
	if err != nil && errors.Is(err, syscall.EIO) {
		select {
		case <-p.exited:
			return n, fmt.Errorf("console command exited: %v", p.waitErr)
		case <-time.After(time.Second):
			return n, fmt.Errorf("console command closed its terminal: %w", err)
		}
	}
	return n, err
}

// Close kills the command's process group, closes the pty and reaps the
// command.
func (p *ptyConn) Close() error {
	p.once.Do(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.File.Close()
		<-p.exited
	})
	return nil
}
