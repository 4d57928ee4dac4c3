// A minimal embedding of Python through PythonQt, as 3D Slicer does it: one QApplication, PythonQt
// initialised without thread support (the main thread holds the GIL while Qt's event loop runs), the Qt
// wrappers of PythonQt_QtAll, then a Python script evaluated in __main__ before the event loop starts.
// The script ends the run with QCoreApplication.exit(code); that code is the host's exit status.
//
// usage: spinesegdiff-pythonqt-host SCRIPT.py [ARGUMENT ...]   (the arguments become host_arguments)
#include <QApplication>
#include <QStringList>
#include <cstdio>

#include "PythonQt.h"
#include "PythonQt_QtAll.h"

int main(int argc, char* argv[])
{
  QApplication app(argc, argv);
  if (argc < 2)
  {
    std::fprintf(stderr, "usage: %s SCRIPT.py [ARGUMENT ...]\n", argv[0]);
    return 2;
  }
  PythonQt::init(PythonQt::RedirectStdOut);
  PythonQt_QtAll::init();
  PythonQtObjectPtr mainModule = PythonQt::self()->getMainModule();
  QObject::connect(PythonQt::self(), &PythonQt::pythonStdOut, [](const QString& text) {
    std::fputs(text.toUtf8().constData(), stdout);
    std::fflush(stdout);
  });
  QObject::connect(PythonQt::self(), &PythonQt::pythonStdErr, [](const QString& text) {
    std::fputs(text.toUtf8().constData(), stderr);
    std::fflush(stderr);
  });
  QStringList arguments;
  for (int index = 1; index < argc; ++index)
  {
    arguments << QString::fromLocal8Bit(argv[index]);
  }
  mainModule.addVariable("host_arguments", arguments);
  mainModule.evalFile(arguments.first());
  if (PythonQt::self()->hadError())
  {
    std::fprintf(stderr, "the script raised an error before the event loop started\n");
    return 3;
  }
  return app.exec();
}
