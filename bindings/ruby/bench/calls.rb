# frozen_string_literal: true

# One kind of call, N times, for bench/count_instructions.sh (run under callgrind):
#   ruby -I lib bench/calls.rb MODE N SNAPSHOT CUSTOMER
# MODE: loop (the loop alone), hash (the Hash floor `table[c][f]`), enabled, handle (a Feature
# handle's enabled?), limit, allows, check.
require "entitle"

mode, n, snapshot, customer = ARGV[0], Integer(ARGV[1]), ARGV[2], ARGV[3].dup.freeze
engine = Entitle::Engine.from_file(snapshot)
flag = "sso"
table = {customer => {flag => engine.enabled?(customer, flag)}}
i = 0
case mode
when "loop" then (i += 1 while i < n)
when "hash"
  while i < n
    table[customer][flag]
    i += 1
  end
when "enabled"
  while i < n
    engine.enabled?(customer, flag)
    i += 1
  end
when "handle"
  sso = engine.feature(flag)
  while i < n
    sso.enabled?(customer)
    i += 1
  end
when "limit"
  while i < n
    engine.limit(customer, "projects")
    i += 1
  end
when "allows"
  while i < n
    engine.allows?(customer, "projects", 2)
    i += 1
  end
when "check"
  while i < n
    engine.check(customer, flag)
    i += 1
  end
else abort "unknown mode #{mode}"
end
