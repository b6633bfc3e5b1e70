# frozen_string_literal: true

module Entitle
  # Prepended to Process's singleton class: Ruby 3.1+ sends every fork (Kernel#fork,
  # Process.fork, IO.popen("-"), and so Puma's and Unicorn's workers) through Process._fork. In the
  # child it restarts the sync thread of every live syncing engine, which a fork leaves behind, so
  # that workers keep following the edge with no server hook.
  module ForkHook
    def _fork
      pid = super
      if pid.zero?
        Entitle::Engine.__after_fork
        Entitle::Engine.__listening.each_key(&:__restart_listener)
      end
      pid
    end
  end

  # Restarts the sync threads of every live syncing engine in a forked child. The fork hook calls
  # it; call it yourself only after a fork that bypasses Process._fork (Process.daemon on Ruby
  # 3.1, a C extension calling fork(2)). Calling it again in the same process does nothing. Returns how many engines were
  # restarted.
  def self.after_fork
    restarted = Engine.__after_fork
    Engine.__listening.each_key(&:__restart_listener)
    restarted
  end

  Process.singleton_class.prepend(ForkHook) if Process.respond_to?(:_fork)
end
