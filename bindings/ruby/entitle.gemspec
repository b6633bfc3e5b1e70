# frozen_string_literal: true

require_relative "lib/entitle/version"

Gem::Specification.new do |spec|
  spec.name = "entitle"
  spec.version = Entitle::VERSION
  spec.summary = "An embedded entitlement engine: feature checks as in-process lookups"
  spec.description = <<~DESC
    Entitle::Engine answers "may this customer use this feature, and how much?" from a snapshot
    held in the process: a check is a memory lookup, not a network call. Engines load snapshot
    files or keep themselves up to date from an edge server in a background thread, and stay in
    sync across forks (Puma cluster mode, Unicorn) with no server hook. The native part is a C
    extension linked statically against libentitle.a (build it with
    `cargo build --release -p entitle-ffi` in the entitle repository).
  DESC
  spec.license = "Apache-2.0"
  spec.authors = ["The entitle authors"]
  spec.required_ruby_version = ">= 3.1"
  spec.files = Dir["lib/**/*.rb", "ext/entitle/*.{c,rb}", "README.md", "examples/*"]
  spec.extensions = ["ext/entitle/extconf.rb"]
  spec.require_paths = ["lib"]
  spec.metadata["rubygems_mfa_required"] = "true"
end
