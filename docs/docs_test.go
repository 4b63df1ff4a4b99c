package docs

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

var (
	// What may carry a number after "issue" or "#" and is not our tracker: links (an
	// upstream project's issue, github.com/OWNER/REPO/issues/N, is a fine thing to cite)
	// and upstream references written OWNER/REPO#N (golang/go#75804).
	allowed = regexp.MustCompile(`https?://[^\s)>\]]+|\bgithub\.com/[^\s)>\]]+|\b[\w.-]+/[\w.-]+#[0-9]+\b`)
	// A tracker reference: "issue 16", "Issues 4 and 5", "issue #27", or a bare "#27".
	tracker = regexp.MustCompile(`(?i)\bissues?\s+#?[0-9]+\b|(?:^|[\s(\[,;])#[0-9]+\b`)
)

// TestNoTrackerNumbers fails on a tracker reference in README.md or docs/*.md, with
// the file and line of each.
func TestNoTrackerNumbers(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "README.md"))
	if len(files) < 3 {
		t.Fatalf("found only %v: expected README.md and docs/*.md", files)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for n := 1; s.Scan(); n++ {
			line := allowed.ReplaceAllString(s.Text(), "")
			if m := tracker.FindString(line); m != "" {
				t.Errorf("%s:%d: tracker reference %q: say what the thing is instead: %s", name, n, m, s.Text())
			}
		}
		if err := s.Err(); err != nil {
			t.Error(err)
		}
		f.Close()
	}
}

func TestTrackerPattern(t *testing.T) {
	for _, bad := range []string{
		"as in issue 18", "(Issue 5 quoted 10 ms)", "issues 4 and 5", "issue #27", "fixed in #27", "(#27)",
	} {
		if tracker.FindString(allowed.ReplaceAllString(bad, "")) == "" {
			t.Errorf("%q not caught", bad)
		}
	}
	for _, good := range []string{
		"see https://github.com/cilium/ebpf/issues/1234", "[bug](https://github.com/golang/go/issues/75804)",
		"github.com/golang/go/issues/75804", "golang/go#75804", "the issue's target", "[Contents](#contents)",
		"# Benchmarks", "&#8212;",
	} {
		if m := tracker.FindString(allowed.ReplaceAllString(good, "")); m != "" {
			t.Errorf("%q caught as %q", good, m)
		}
	}
}
