// security_test.go checks SECURITY.md, the threat model: every test it
// names in backticks (`TestX`, `FuzzX`, `BenchmarkX`) as holding a claim is
// a function of some _test.go file of this package, build-tagged ones
// included, so that a test renamed or removed does not leave a claim held
// by nothing.
package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// namedTest is a test, fuzz target or benchmark named in backticks.
var namedTest = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Z0-9_][A-Za-z0-9_]*)`")

func TestSecurityMDNamesOnlyTestsThatExist(t *testing.T) {
	doc, err := os.ReadFile("SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	declared := testFunctions(t)
	// Without these, a parse that found nothing or a document that names
	// nothing would pass.
	if !declared["TestSecurityMDNamesOnlyTestsThatExist"] {
		t.Fatalf("the parse of the _test.go files did not find this test; found %d functions", len(declared))
	}
	named := namedTest.FindAllStringSubmatch(string(doc), -1)
	if len(named) == 0 {
		t.Fatal("SECURITY.md names no test")
	}
	var missing []string
	for _, m := range named {
		if !declared[m[1]] && !slices.Contains(missing, m[1]) {
			missing = append(missing, m[1])
		}
	}
	if len(missing) > 0 {
		t.Errorf("SECURITY.md names %d tests that no _test.go file declares: %v", len(missing), missing)
	}
}

// testFunctions is the set of names of the top-level functions (no
// methods) of every _test.go file here. go/parser reads each file whatever
// its build constraints, so load_test.go counts too.
func testFunctions(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil {
				declared[fn.Name.Name] = true
			}
		}
	}
	return declared
}
