; Inno Setup 6 script for the Windows installer of medview.
;
; Build on Windows (the frozen app cannot be cross-built from Linux):
;   py -3.11 -m pip install -c packaging\constraints-cpu.txt -e ".[packaging]"
;   py -3.11 packaging\build.py                      -> dist\medview\medview.exe + dist\medview-<ver>-windows-amd64.zip
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\medview.iss
;                                                    -> dist\medview-0.1.0-setup.exe
; See docs/packaging.md ("Windows installer") and docs/history/packaging.md.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "medview"
#define AppExe "medview.exe"
#define SrcDir "..\..\dist\medview"

[Setup]
; a fixed AppId keeps upgrades in place (do not change between releases)
AppId={{6B0E3C55-2F4B-4C7E-9A61-0D6C1F2A7B3E}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=medview developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-machine by default; a user without admin rights can choose a per-user install
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename={#AppName}-{#AppVersion}-setup
SetupIconFile=..\..\resources\icons\medview.ico
UninstallDisplayIcon={app}\{#AppExe}
; the bundle is large (torch, Qt): LZMA2 solid compression roughly halves the download
Compression=lzma2/max
SolidCompression=yes
LZMANumBlockThreads=4
WizardStyle=modern
LicenseFile=
ChangesAssociations=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "assocdcm"; Description: "Open .dcm files with medview"; GroupDescription: "File associations:"; Flags: unchecked

[Files]
; the whole one-folder build; ignoreversion because the folder is replaced as a unit
Source: "{#SrcDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; an upgrade must not keep stale modules from the previous version
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; IconFilename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "Software\Classes\.dcm\OpenWithProgids"; ValueType: string; ValueName: "medview.dcm"; ValueData: ""; Flags: uninsdeletevalue; Tasks: assocdcm
Root: HKA; Subkey: "Software\Classes\medview.dcm"; ValueType: string; ValueName: ""; ValueData: "DICOM image"; Flags: uninsdeletekey; Tasks: assocdcm
Root: HKA; Subkey: "Software\Classes\medview.dcm\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#AppExe},0"; Tasks: assocdcm
Root: HKA; Subkey: "Software\Classes\medview.dcm\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""; Tasks: assocdcm

[Run]
; verify the installed copy (headless, offline) before offering to start it
Filename: "{app}\medview-cli.exe"; Parameters: "--self-test"; StatusMsg: "Checking the installation (medview --self-test)..."; Flags: runhidden waituntilterminated
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
