# frozen_string_literal: true

# Leaks across the boundary: the process's RSS stays flat over a million lookups (every kind,
# including the allocating ones) and over a thousand engines created and closed (or dropped and
# collected), with GC.start. Runs in a fresh Ruby so that other tests' memory does not count.
require_relative "test_helper"

class LeakTest < Minitest::Test
  include EntitleTest

  CODE = <<~RUBY
    def rss_kb = File.read("/proc/self/status")[/VmRSS:\\s+(\\d+)/, 1].to_i

    catalog = ARGV[0]
    snapshot = File.binread(ARGV[1])
    engine = Entitle::Engine.from_catalog(catalog)
    lookups = lambda do |n|
      n.times do |i|
        case i % 8
        when 0, 1, 2 then engine.enabled?("cus_pro", "sso")
        when 3 then engine.limit("cus_ent", "projects")
        when 4 then engine.allows?("cus_pro", "projects", i % 60, requested: 2)
        when 5 then engine.check("nobody", "projects", at: 1_700_000_000)
        when 6 then engine.enabled?("cus_pro\\xff".b, "sso")
        else engine.entitlements("cus_pro") if i % 64 == 7
        end
      end
    end
    engines = lambda do |n|
      n.times do |i|
        e = i.even? ? Entitle::Engine.from_catalog(catalog) : Entitle::Engine.from_snapshot(snapshot)
        e.check("cus_pro", "projects")
        begin
          Entitle::Engine.from_catalog("{")
        rescue Entitle::CatalogError
          nil
        end
        e.close if i % 4 != 3 # the others are left to the garbage collector
      end
    end
    lookups.call(200_000) # warm up: heaps, caches, the allocator's arenas
    engines.call(100)
    GC.start
    before = rss_kb
    lookups.call(1_000_000)
    GC.start
    after_lookups = rss_kb
    engines.call(1_000)
    GC.start
    GC.start
    after_engines = rss_kb
    puts [before, after_lookups, after_engines, Entitle::Engine.__live_count].join(" ")
  RUBY

  def test_rss_is_flat
    Dir.mktmpdir do |dir|
      snapshot = snapshots(dir)[:v1]
      out, err, status, = run_ruby(CODE, JSON.generate(catalog), snapshot, timeout: 300)
      assert status&.success?, err
      before, after_lookups, after_engines, live = out.split.map { |x| Integer(x) }
      # A leak of even 8 bytes per lookup would be 8 MB; per engine (~10 KB of native memory each)
      # 10 MB.
      assert_operator after_lookups - before, :<, 4_096, "RSS grew by #{after_lookups - before} KB over 1M lookups"
      assert_operator after_engines - after_lookups, :<, 4_096, "RSS grew by #{after_engines - after_lookups} KB over 1,000 engines"
      assert_equal 1, live, "engines neither closed nor collected"
    end
  end
end
