// Package archtest holds the test that keeps Herald's package dependencies in the
// direction docs/architecture describes; it has no code of its own.
package archtest
