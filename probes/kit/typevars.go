package kit

import (
	"maps"
	"slices"
)

// TypeVariables are a C program's type_* variables: where the app has the type
// descriptors of the pointer types *T its program compares an interface's type word
// with (a connection's, an error's), by the struct T's name. They are known before
// the app runs unless it is position-independent; then they are set once it runs,
// at its first event (SetOnce).
type TypeVariables struct {
	obj   *Object
	names map[string]string // the variable, by struct
	links map[string]uint64 // the descriptors' link addresses, by struct
	set   bool
}

// TypeVariables reads, in the app's binary, the descriptors of the structs named (the
// keys of names, each the name of its C variable). A struct the binary lacks keeps its
// variable at 0: attributes that need it are missing, nothing else.
func (o *Object) TypeVariables(names map[string]string) *TypeVariables {
	links, _ := o.PointerTypes(slices.Collect(maps.Keys(names))...)
	return &TypeVariables{obj: o, names: names, links: links}
}

// Values are the variables' values for Configure (ConfigureWith): empty while the
// app's addresses are not known yet.
func (t *TypeVariables) Values() map[string]uint64 {
	vars, err := t.values()
	t.set = err == nil
	return vars
}

// SetOnce sets the variables if Values could not: the caller decodes the app's first
// event, so the app runs. One try: it runs, or never will.
func (t *TypeVariables) SetOnce() {
	if t.set {
		return
	}
	t.set = true
	if vars, err := t.values(); err == nil {
		t.obj.SetVariables(vars)
	}
}

func (t *TypeVariables) values() (map[string]uint64, error) {
	vars := map[string]uint64{}
	addrs, err := t.obj.InApp(t.links)
	if err != nil {
		return vars, err
	}
	for st, addr := range addrs {
		vars[t.names[st]] = addr
	}
	return vars, nil
}
