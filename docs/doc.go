// Package docs holds the project's documentation (design.md, benchmarks.md,
// libraries.md, configuration.md, containers.md, testing.md); it has no code. Its test
// keeps the README and these documents free of tracker numbers: they are read as a
// user's guide and a design, and say what a thing is, not which ticket it was.
package docs
