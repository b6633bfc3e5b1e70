# frozen_string_literal: true

# Nanoseconds per Entitle::Engine#enabled? call from Ruby, next to a Hash lookup of the same
# answers as the floor, measured in the same run.
#
# Usage (from the repository root, after scripts/test-ruby.sh has compiled the extension):
#
#   ruby -I bindings/ruby/lib bindings/ruby/bench/bench_enabled.rb [--customers N] [--rounds R]
#
# Builds (once) a synthetic catalog of N customers (default 1,000,000) with `entitle synth` and
# its snapshot with `entitle build` under target/ruby-bench/, then times, per round, every row
# once (the rows take turns, so load changes hit every row alike) and reports the median and the
# best round:
#
# - hot: the same customer every call (the CPU caches hold everything);
# - random: 200,000 customers drawn uniformly from the N before timing (each call misses the
#   caches, as in production);
# - the floor: table[customer][feature] over a Hash of N customers, each a Hash of the features
#   asked for, holding the engine's own answers;
# - limit, allows? and check for the hot customer, and a Feature handle's enabled?;
# - a Feature handle's check_many over the random customers, 1,000 per call.
#
# Every figure includes the `while` loop's own cost (the same for every row of a group); "loop
# alone" shows it for the random rows (it includes fetching each id String).
require "entitle"
require "etc"
require "optparse"

REPO = File.expand_path("../../..", __dir__)
TARGET = File.expand_path(ENV.fetch("CARGO_TARGET_DIR", File.join(REPO, "target")), REPO)
ENTITLE = File.join(TARGET, "release", "entitle")

options = {customers: 1_000_000, rounds: 9, hot: 1_000_000, random: 200_000}
OptionParser.new do |o|
  o.on("--customers N", Integer) { |v| options[:customers] = v }
  o.on("--rounds N", Integer) { |v| options[:rounds] = v }
end.parse!

def snapshot(customers)
  out = File.join(TARGET, "ruby-bench")
  Dir.mkdir(out) unless Dir.exist?(out)
  catalog = File.join(out, "synth-#{customers}.json")
  snap = File.join(out, "synth-#{customers}.snap")
  unless File.exist?(snap)
    warn "generating #{customers} customers into #{out} ..."
    system(ENTITLE, "synth", "--customers", customers.to_s, "-o", catalog, exception: true)
    system(ENTITLE, "build", catalog, "-o", snap, exception: true)
  end
  [catalog, snap]
end

def customer_ids(catalog)
  ids = []
  File.foreach(catalog) do |line|
    id = line[/\{"id": "(cus_[^"]*)"/, 1]
    ids << id.freeze if id
  end
  ids
end

def clock = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)

catalog, snap = snapshot(options[:customers])
engine = Entitle::Engine.from_file(snap)
ids = customer_ids(catalog)
raise "expected #{options[:customers]} customers, found #{ids.size}" unless ids.size == options[:customers]

flag = "sso"
limit_feature = "projects"
table = {}
ids.each { |c| table[c] = {flag => engine.enabled?(c, flag)} }
rng = Random.new(42)
random_ids = Array.new(options[:random]) { ids[rng.rand(ids.size)] }
hot = ids[ids.size / 2]
sso = engine.feature(flag)
random_slices = random_ids.each_slice(1000).to_a
raise "the floor disagrees" unless random_ids.first(1000).all? { |c| table[c][flag] == engine.enabled?(c, flag) }

n_hot = options[:hot]
n_random = random_ids.size

# Each row: [label, calls, lambda timing one run, returning nanoseconds].
rows = [
  ["Hash floor, hot: `table[c][f]`", n_hot, lambda {
    t = clock
    i = 0
    while i < n_hot
      table[hot][flag]
      i += 1
    end
    clock - t
  }],
  ["`engine.enabled?(c, f)`, hot", n_hot, lambda {
    t = clock
    i = 0
    while i < n_hot
      engine.enabled?(hot, flag)
      i += 1
    end
    clock - t
  }],
  ["`sso.enabled?(c)` (a Feature handle), hot", n_hot, lambda {
    t = clock
    i = 0
    while i < n_hot
      sso.enabled?(hot)
      i += 1
    end
    clock - t
  }],
  ["`engine.limit(c, f)`, hot", n_hot, lambda {
    t = clock
    i = 0
    while i < n_hot
      engine.limit(hot, limit_feature)
      i += 1
    end
    clock - t
  }],
  ["`engine.allows?(c, f, usage)`, hot", n_hot, lambda {
    t = clock
    i = 0
    while i < n_hot
      engine.allows?(hot, limit_feature, 2)
      i += 1
    end
    clock - t
  }],
  ["`engine.check(c, f)` (a frozen Decision), hot", n_hot, lambda {
    t = clock
    i = 0
    while i < n_hot
      engine.check(hot, flag)
      i += 1
    end
    clock - t
  }],
  ["loop alone, random (no lookup)", n_random, lambda {
    t = clock
    i = 0
    while i < n_random
      random_ids[i]
      i += 1
    end
    clock - t
  }],
  ["Hash floor, random: `table[c][f]`", n_random, lambda {
    t = clock
    i = 0
    while i < n_random
      table[random_ids[i]][flag]
      i += 1
    end
    clock - t
  }],
  ["`engine.enabled?(c, f)`, random", n_random, lambda {
    t = clock
    i = 0
    while i < n_random
      engine.enabled?(random_ids[i], flag)
      i += 1
    end
    clock - t
  }],
  ["`sso.check_many(ids)` (one call per 1,000 ids), random", n_random, lambda {
    t = clock
    i = 0
    while i < n_random
      sso.check_many(random_slices[i / 1000])
      i += 1000
    end
    clock - t
  }]
]

GC.start
per_call = Hash.new { |h, k| h[k] = [] }
options[:rounds].times do
  rows.each { |label, calls, run| per_call[label] << run.call.fdiv(calls) }
end

median = ->(xs) { xs.sort[xs.size / 2] }
floor_hot = median.call(per_call[rows[0][0]])
floor_random = median.call(per_call[rows[7][0]])
puts "| call | ns/call, median | best run | × Hash floor (median) |"
puts "|---|---:|---:|---:|"
rows.each_with_index do |(label, _, _), i|
  floor = i < 6 ? floor_hot : floor_random
  ratio = i == 6 ? "" : format("%.2f", median.call(per_call[label]) / floor)
  puts format("| %s | %d | %d | %s |", label, median.call(per_call[label]).round, per_call[label].min.round, ratio)
end
cpu = File.read("/proc/cpuinfo")[/model name\s*:\s*(.*)/, 1]
mem = File.read("/proc/meminfo")[/MemTotal:\s*(\d+)/, 1].to_i / 1024 / 1024
load = File.read("/proc/loadavg").split.first
puts
puts "Machine: #{Etc.nprocessors} cores, #{cpu}, #{mem} GiB, Linux #{Etc.uname[:release]}, " \
     "#{RUBY_DESCRIPTION}; snapshot #{File.size(snap) / 1_000_000.0} MB, #{ids.size} customers; " \
     "load average #{load} at the end."
