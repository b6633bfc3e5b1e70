# frozen_string_literal: true

# Shipping: `gem build` makes a gem that `gem install --local` installs into a scratch directory
# (under target/, pointed at libentitle.a and entitle.h by the documented variables), and a script
# run from elsewhere requires it and answers a check. Without libentitle.a the build stops with a
# message that says what to do.
require_relative "test_helper"
require "fileutils"

class GemTest < Minitest::Test
  include EntitleTest

  GEM_DIR = File.expand_path("..", __dir__)

  def test_build_install_and_use
    scratch = File.join(TARGET, "ruby", "gem-test")
    FileUtils.rm_rf(scratch)
    FileUtils.mkdir_p(scratch)
    gem_file = File.join(scratch, "entitle-#{Entitle::VERSION}.gem")
    _, err, status = Open3.capture3("gem", "build", "entitle.gemspec", "--output", gem_file, chdir: GEM_DIR)
    assert status.success?, err
    assert File.file?(gem_file)

    home = File.join(scratch, "home")
    env = {"ENTITLE_LIB_DIR" => File.join(TARGET, "release"),
           "ENTITLE_INCLUDE_DIR" => File.join(REPO, "ffi", "include"),
           "GEM_HOME" => home, "GEM_PATH" => home}
    out, status = Open3.capture2e(env, "gem", "install", "--local", "--no-document", "--install-dir", home, gem_file,
                                  chdir: scratch)
    assert status.success?, out
    installed = Dir[File.join(home, "gems", "entitle-*", "lib", "entitle", "entitle_ext.so")]
    installed += Dir[File.join(home, "extensions", "**", "entitle", "entitle_ext.so")]
    refute_empty installed, out

    catalog_file = File.join(scratch, "catalog.json")
    File.write(catalog_file, JSON.generate(catalog))
    script = File.join(scratch, "check.rb")
    File.write(script, <<~RUBY)
      require "entitle"
      raise "loaded from \#{$LOADED_FEATURES.grep(/entitle_ext/).inspect}" unless $LOADED_FEATURES.grep(/entitle_ext/).all? { |f| f.start_with?(ENV["GEM_HOME"]) }
      Entitle::Engine.open(ARGV[0]) do |engine|
        puts engine.enabled?("cus_pro", "sso"), engine.limit("cus_ent", "projects"), engine.check("nobody", "sso").reason
      end
    RUBY
    # A clean environment: no -I to the source tree, run from the scratch directory.
    clean = env.merge("RUBYOPT" => nil, "RUBYLIB" => nil)
    out, status = Open3.capture2e(clean, RbConfig.ruby, script, catalog_file, chdir: scratch)
    assert status.success?, out
    assert_equal "true\nInfinity\ncustomer_not_found\n", out
  end

  # The library and header directories may contain spaces (they were passed to the compiler and
  # linker unquoted: the header check failed).
  def test_directories_with_spaces
    Dir.mktmpdir("entitle gem") do |dir|
      File.symlink(File.join(TARGET, "release"), File.join(dir, "lib dir"))
      File.symlink(File.join(REPO, "ffi", "include"), File.join(dir, "include dir"))
      build = File.join(dir, "build")
      FileUtils.mkdir_p(build)
      env = {"ENTITLE_LIB_DIR" => File.join(dir, "lib dir"), "ENTITLE_INCLUDE_DIR" => File.join(dir, "include dir")}
      out, status = Open3.capture2e(env, RbConfig.ruby, File.join(GEM_DIR, "ext", "entitle", "extconf.rb"), chdir: build)
      assert status.success?, out
      out, status = Open3.capture2e("make", chdir: build)
      assert status.success?, out
      refute_empty Dir[File.join(build, "**", "entitle_ext.so")]
    end
  end

  def test_a_missing_library_is_a_clear_error
    Dir.mktmpdir do |dir|
      env = {"ENTITLE_LIB_DIR" => dir, "ENTITLE_INCLUDE_DIR" => File.join(REPO, "ffi", "include")}
      out, status = Open3.capture2e(env, RbConfig.ruby, File.join(GEM_DIR, "ext", "entitle", "extconf.rb"), chdir: dir)
      refute status.success?
      assert_includes out, "libentitle.a not found in #{dir}"
      assert_includes out, "cargo build --release -p entitle-ffi"
    end
  end
end
