package main

import (
	"reflect"
	"testing"
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
