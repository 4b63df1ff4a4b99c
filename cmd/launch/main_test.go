package main

import (
	"reflect"
	"slices"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/otel-go-launcher/otel-go-launcher/launcher"
)

func TestSplitCommand(t *testing.T) {
	for _, c := range []struct {
		in, own, command []string
	}{
		{[]string{"launch", "--", "/app", "-x"}, []string{"launch"}, []string{"/app", "-x"}},
		{[]string{"launch", "--user", "1", "--", "/app", "--", "--user"}, []string{"launch", "--user", "1"}, []string{"/app", "--", "--user"}},
		{[]string{"launch", "/app"}, []string{"launch", "/app"}, nil},
		{[]string{"launch", "--"}, []string{"launch"}, []string{}},
	} {
		own, command := splitCommand(c.in)
		if !reflect.DeepEqual(own, c.own) || !reflect.DeepEqual(command, c.command) {
			t.Errorf("%q: %q %q, want %q %q", c.in, own, command, c.own, c.command)
		}
	}
}

func TestFlagEnv(t *testing.T) {
	if got := flagEnv("require-instrumentation"); !reflect.DeepEqual(got, []string{"LAUNCH_REQUIRE_INSTRUMENTATION"}) {
		t.Errorf("got %q", got)
	}
}

// The CLI's subcommands (with their aliases) are exactly the list
// the start gate's init goes by: a command missing there would fork a gate process and
// take the app's signals.
func TestSubcommandsAreOneList(t *testing.T) {
	app := newApp(nil)
	app.Setup()
	var names []string
	for _, c := range app.Commands {
		names = append(names, c.Names()...)
	}
	slices.Sort(names)
	want := slices.Clone(launcher.Subcommands)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("the CLI's commands are %q; launcher.Subcommands (gate.Subcommands) is %q", names, want)
	}
}

// Every flag of every command has its LAUNCH_ variable, whatever its type, but those
// the environment must not set and those a variable cannot say.
func TestEveryFlagHasItsVariable(t *testing.T) {
	app := newApp(nil)
	check := func(cmd string, flags []cli.Flag) {
		for _, f := range flags {
			name := f.Names()[0]
			got := f.(cli.DocGenerationFlag).GetEnvVars()
			want := flagEnv(name)
			if slices.Contains(commandLineOnly, name) || slices.Contains(repeatedOnly, name) {
				want = nil
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s --%s (%T): variables %q, want %q", cmd, name, f, got, want)
			}
		}
	}
	check("launch", app.Flags)
	for _, c := range app.Commands {
		check("launch "+c.Name, c.Flags)
	}
}
