# frozen_string_literal: true

# Ractors: the extension is marked Ractor-safe. Engines made and used inside Ractors running in
# parallel answer correctly, and Decisions (frozen) cross between Ractors.
require_relative "test_helper"

class RactorTest < Minitest::Test
  include EntitleTest

  def test_engines_inside_ractors
    out, err, status, = run_ruby(<<~RUBY, JSON.generate(catalog), timeout: 120)
      Warning[:experimental] = false
      json = ARGV[0].freeze
      ractors = Array.new(3) do |i|
        Ractor.new(json, i) do |catalog, n|
          engine = Entitle::Engine.from_catalog(catalog)
          ok = 20_000.times.count do
            engine.enabled?("cus_pro", "sso") && engine.limit("cus_ent", "projects") == Float::INFINITY &&
              engine.allows?("cus_pro", "projects", 49) && !engine.enabled?("nobody", :sso)
          end
          decision = engine.check("cus_pro", "projects")
          errors = begin
            Entitle::Engine.from_catalog("{}")
          rescue Entitle::CatalogError => e
            e.code
          end
          hash_engine = Entitle::Engine.from_catalog({"features" => [{"key" => "f", "type" => "flag", "default" => true}]})
          engine.close
          [n, ok, decision, errors, hash_engine.enabled?("x", "f")]
        end
      end
      results = ractors.map(&:take).sort_by(&:first)
      results.each do |n, ok, decision, code, hash_answer|
        raise "ractor \#{n}: \#{ok} lookups right" unless ok == 20_000
        raise "ractor \#{n}: decision \#{decision.inspect}" unless decision.limit == 50 && Ractor.shareable?(decision)
        raise "ractor \#{n}: error code \#{code}" unless code == 8
        raise "ractor \#{n}: hash catalog" unless hash_answer == true
      end
      puts "ok \#{results.size}"
    RUBY
    assert status&.success?, err
    assert_equal "ok 3\n", out
  end

  # on_change works inside a Ractor too (it raised Ractor::IsolationError there, after starting
  # its thread).
  def test_on_change_inside_a_ractor
    Dir.mktmpdir do |dir|
      out, err, status, = run_ruby(<<~RUBY, JSON.generate(catalog), snapshots(dir)[:v1], timeout: 120)
        Warning[:experimental] = false
        ractor = Ractor.new(ARGV[0].freeze, ARGV[1].freeze) do |catalog, snapshot|
          engine = Entitle::Engine.from_catalog(catalog)
          changes = Thread::Queue.new
          engine.on_change { |event| changes << [event.old_version, event.new_version] }
          engine.replace_file(snapshot)
          change = changes.pop
          engine.close
          change
        end
        puts ractor.take.inspect
      RUBY
      assert status&.success?, err
      assert_equal "[0, 1]\n", out
    end
  end
end
