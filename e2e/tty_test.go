package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// ptyRun starts the launcher as a session leader on a new pseudo-terminal, as a shell
// in a terminal (or `docker run -it`) does.
type ptyRun struct {
	cmd  *exec.Cmd
	ptmx *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func startOnPty(t *testing.T, env []string, argv ...string) *ptyRun {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	p := &ptyRun{cmd: exec.Command(argv[0], argv[1:]...), ptmx: ptmx, done: make(chan error, 1)}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tty, tty, tty
	p.cmd.Env = env
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		for _, pid := range descendantsOf(p.cmd.Process.Pid) {
			killPID(pid, syscall.SIGKILL)
		}
		p.cmd.Process.Kill()
		ptmx.Close()
	})
	return p
}

func (p *ptyRun) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *ptyRun) expect(t *testing.T, what string) {
	t.Helper()
	if !eventually(10*time.Second, func() bool { return strings.Contains(p.output(), what) }) {
		t.Fatalf("terminal never showed %q; it shows:\n%s", what, p.output())
	}
}

// With stdin a terminal, the app gets the foreground process group: job control works
// in an interactive bash under the launcher (^Z stops a job, bash gets the terminal back).
func TestJobControlInInteractiveBash(t *testing.T) {
	bash := testenv.RequireCommand(t, "bash")
	env := []string{"PATH=/usr/bin:/bin", "TERM=dumb", "PS1=prompt$ ", "HOME=/"}
	p := startOnPty(t, env, launchBin(t), "--", bash, "--norc", "--noprofile", "-i")
	p.expect(t, "prompt$ ")
	p.ptmx.WriteString("sleep 30\n")
	if !eventually(10*time.Second, func() bool { return strings.Contains(psTree(p.cmd.Process.Pid), "sleep") }) {
		t.Fatalf("sleep never started:\n%s", p.output())
	}
	p.ptmx.Write([]byte{0x1a}) // ^Z
	p.expect(t, "Stopped")
	// SIGKILL ends the stopped job at once, and wait reaps it: an exit while bash
	// still lists it would only say "There are stopped jobs".
	p.ptmx.WriteString("jobs; kill -KILL %1; wait %1; echo after-jobs\n")
	p.expect(t, "after-jobs")
	p.ptmx.WriteString("exit 7\n")
	select {
	case err := <-p.done:
		ee, _ := err.(*exec.ExitError)
		if ee == nil || ee.ExitCode() != 7 {
			t.Errorf("launcher ended with %v, want exit 7", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("bash did not exit:\n%s", p.output())
	}
	if out := p.output(); strings.Contains(out, "no job control") || strings.Contains(out, "cannot set terminal process group") {
		t.Errorf("bash had no job control:\n%s", out)
	}
}

// The app on a terminal leads the foreground process group; without a terminal it
// simply runs.
func TestForegroundProcessGroup(t *testing.T) {
	p := startOnPty(t, []string{"PATH=/usr/bin:/bin"}, launchBin(t), "--", testApp(t), "report")
	p.expect(t, "}")
	if err := <-p.done; err != nil {
		t.Fatalf("launcher: %v\n%s", err, p.output())
	}
	out := p.output()
	rep := parseReport(t, out[strings.Index(out, "{"):strings.LastIndex(out, "}")+1], "")
	if rep.Foreground != rep.PGID || rep.PGID != rep.PID {
		t.Errorf("on a terminal: app pid %d pgid %d, terminal foreground %d; want all equal", rep.PID, rep.PGID, rep.Foreground)
	}
	rep = appReport(t, opts{}, nil) // stdin is a pipe
	if rep.Foreground != -1 || rep.PGID != rep.PID {
		t.Errorf("without a terminal: foreground %d pgid %d pid %d", rep.Foreground, rep.PGID, rep.PID)
	}
}

// psTree lists the commands below pid.
func psTree(pid int) string {
	var names []string
	for _, p := range descendantsOf(pid) {
		b, _ := os.ReadFile("/proc/" + itoa(p) + "/comm")
		names = append(names, strings.TrimSpace(string(b)))
	}
	return strings.Join(names, " ")
}
