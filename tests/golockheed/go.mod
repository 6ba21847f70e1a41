// The Go side of lockheed's interoperability tests (tests/test_go_interop.py):
// Go lockheed v0.5.3 driven from the command line.
//
// The versions are those that Go lockheed v0.5.3's own go.mod selects
// (k8s.io/* v0.18.6 and what they need); this go.mod and go.sum are what
// `go mod tidy` writes. The public module proxy refuses Go lockheed v0.5.3 and
// the checksum database knows neither goblain module, so tests/golockheed.py
// builds with a module-proxy directory holding Go lockheed v0.5.3 and go-retry
// ahead of the usual proxy, GONOSUMDB=github.com/goblain, and this go.sum
// (-mod=readonly): see that file.
module lockheed.testing/golockheed

go 1.22

require (
	github.com/goblain/lockheed v0.5.3
	golang.org/x/sys v0.0.0-20200323222414-85ca7c5b95cd
	k8s.io/apimachinery v0.18.6
	k8s.io/client-go v0.18.6
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/goblain/go-retry v0.0.0-20221205140251-4ffabb57e5da // indirect
	github.com/gogo/protobuf v1.3.1 // indirect
	github.com/golang/protobuf v1.4.2 // indirect
	github.com/google/gofuzz v1.1.0 // indirect
	github.com/google/uuid v1.1.1 // indirect
	github.com/googleapis/gnostic v0.1.0 // indirect
	github.com/imdario/mergo v0.3.5 // indirect
	github.com/json-iterator/go v1.1.8 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.1 // indirect
	github.com/spf13/pflag v1.0.5 // indirect
	golang.org/x/crypto v0.0.0-20200709230013-948cd5f35899 // indirect
	golang.org/x/net v0.0.0-20200707034311-ab3426394381 // indirect
	golang.org/x/oauth2 v0.0.0-20200107190931-bf48bf16ab8d // indirect
	golang.org/x/text v0.3.2 // indirect
	golang.org/x/time v0.0.0-20200630173020-3af7569d3a1e // indirect
	google.golang.org/appengine v1.5.0 // indirect
	google.golang.org/protobuf v1.23.0 // indirect
	gopkg.in/inf.v0 v0.9.1 // indirect
	gopkg.in/yaml.v2 v2.2.8 // indirect
	k8s.io/api v0.18.6 // indirect
	k8s.io/klog v1.0.0 // indirect
	k8s.io/utils v0.0.0-20200324210504-a9aa75ae1b89 // indirect
	sigs.k8s.io/structured-merge-diff/v3 v3.0.0 // indirect
	sigs.k8s.io/yaml v1.2.0 // indirect
)
